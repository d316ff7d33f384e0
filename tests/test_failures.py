"""The failure paths of issue 18: one clean error (exit 2) per expected failure, no lost or mixed runs.

Each test feeds the command line (or the class behind it) a bad file, a full or unusable disk, a
second writer, or an --overwrite of something that is not a run, and checks the exit code, that the
message names the file or flag, that no traceback is printed and that nothing is lost or left over.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
import sys
import urllib.error
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_fake_cifar, write_py2_pickle
from PIL import Image

from auxtrain import run_lock
from auxtrain.cli import main
from auxtrain.data.image_folder import load_image
from auxtrain.errors import DataError, RunLockedError, WriteError
from auxtrain.run_dir import RunDir, RunLock, atomic_write_bytes

TINY = ["--dataset", "shapes", "--train-size", "128", "--test-size", "32", "--batch-size", "64",
        "--model", "resnet20", "--no-progress", "--no-eval", "--epochs", "1", "--corruptions", "none"]
EVAL_TINY = ["--generate", "--dataset", "shapes", "--test-size", "10", "--corruptions", "gaussian_noise",
             "--severities", "1", "--no-progress"]


def _cli(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _clean_error(code, err, *needles):
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("auxtrain: error: "), err
    for needle in needles:
        assert str(needle) in err, err


# -- item 1: readers name the file; every expected failure is one line with exit 2 ----------------

def _truncated(f):
    f.write_bytes(f.read_bytes()[:300])


def _zero_bytes(f):
    f.write_bytes(b"")


def _random_bytes(f):
    f.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())


def _object_dtype(f):
    write_py2_pickle(f, {"data": np.array([object()] * 3, dtype=object), "labels": [0, 1, 2]})


def _malicious(f):
    f.write_bytes(b"cos\nsystem\n(S'touch PWNED'\ntR.")


@pytest.mark.parametrize("damage", [_truncated, _zero_bytes, _random_bytes, _object_dtype, _malicious])
def test_a_damaged_cifar_batch_is_one_clean_error_naming_the_file(tmp_path, capsys, damage):
    root = write_fake_cifar(tmp_path / "data", "cifar10").root
    batch = root / "cifar-10-batches-py" / "test_batch"
    damage(batch)
    code, _, err = _cli(["fit", *TINY, "--dataset", "cifar10", "--data-root", root, "--train-size", "50",
                         "--test-size", "20", "--batch-size", "10", "--out", tmp_path / "run"], capsys)
    _clean_error(code, err, batch, "official archive")
    assert not (tmp_path / "run").exists() and not Path("PWNED").exists()


@pytest.mark.parametrize("command", [
    ["make-c", "--dataset", "cifar10", "--corruptions", "gaussian_noise", "--severities", "1"],
    ["eval", "--checkpoint", "{model}", "--generate", "--dataset", "cifar10"],
])
def test_make_c_and_eval_generate_name_the_damaged_batch(tmp_path, capsys, command, trained_run):
    root = write_fake_cifar(tmp_path / "data", "cifar10").root
    batch = root / "cifar-10-batches-py" / "test_batch"
    _malicious(batch)
    argv = [a.replace("{model}", str(trained_run / RunDir.MODEL)) for a in command]
    code, _, err = _cli([*argv, "--data-root", root, "--out", tmp_path / "out"], capsys)
    _clean_error(code, err, batch, "refusing to load global os.system")


def test_download_without_network_is_a_clean_error(tmp_path, capsys, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kw):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    code, _, err = _cli(["fit", *TINY, "--dataset", "cifar10", "--data-root", tmp_path / "data", "--download",
                         "--out", tmp_path / "run"], capsys)
    _clean_error(code, err, "could not download", "Without network")


def test_out_under_a_file_is_a_clean_error_for_fit_and_eval(tmp_path, capsys, trained_run):
    (tmp_path / "afile").write_text("x")
    code, _, err = _cli(["fit", *TINY, "--out", tmp_path / "afile" / "run"], capsys)
    _clean_error(code, err, tmp_path / "afile", "is a file, not a folder")
    code, _, err = _cli(["eval", "--checkpoint", trained_run / RunDir.MODEL, *EVAL_TINY,
                         "--out", tmp_path / "afile" / "report"], capsys)
    _clean_error(code, err, tmp_path / "afile" / "report")


def test_read_only_out_is_a_clean_error(tmp_path, capsys, monkeypatch):
    # Root ignores permissions, so the read-only file system is simulated where the folder is made.
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    code, _, err = _cli(["fit", *TINY, "--out", tmp_path / "ro" / "run"], capsys)
    _clean_error(code, err, tmp_path / "ro" / "run", "read-only", "writable disk")


def _bomb_png(path, side=15000):
    """A PNG whose header says 15000 x 15000 (225 megapixels) without holding the pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))
                     + chunk(b"IEND", b""))


def _truncated_jpeg(path):
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:300])


def _image_folder(root):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for i in range(3):
                image = rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)
                Image.fromarray(image).save(root / split / name / f"{i}.png")
    return root


@pytest.mark.parametrize("name,make,workers", [
    ("notes.jpg", lambda p: p.write_text("not an image"), 0),
    ("cut.jpg", _truncated_jpeg, 0),
    ("big.png", _bomb_png, 0),
    ("notes.jpg", lambda p: p.write_text("not an image"), 1),  # raised in a DataLoader worker
])
def test_an_undecodable_image_mid_epoch_is_named(tmp_path, capsys, name, make, workers):
    root = _image_folder(tmp_path / "images")
    make(root / "train" / "a" / name)
    code, _, err = _cli(["fit", "--dataset", "imagefolder", "--data-root", root, "--image-size", "32",
                         "--batch-size", "7", "--model", "resnet20", "--epochs", "1", "--corruptions", "none",
                         "--no-eval", "--no-progress", "--workers", workers, "--out", tmp_path / "run"],
                        capsys)
    _clean_error(code, err, root / "train" / "a" / name)
    assert "Original Traceback" not in err and "\n" not in err.strip()


def test_a_binary_config_file_is_named(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_bytes(b"\xff\xfe\x00binary")
    code, _, err = _cli(["fit", "-c", config, *TINY, "--out", tmp_path / "run"], capsys)
    _clean_error(code, err, f"config file {config} is not a UTF-8 text file")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A finished one-epoch shapes run (checkpoint, config, model); copy it before changing it."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main([*["fit"], *TINY, "--out", str(out)]) == 0
    return out


def _copy_run(trained_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    return out


def _edit_checkpoint(out, edit):
    path = out / RunDir.CHECKPOINT
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)


@pytest.mark.parametrize("damage,needle", [
    (lambda out: (out / RunDir.CONFIG).write_text("config: [unclosed\n  : :"), "is not valid YAML"),
    (lambda out: _edit_checkpoint(out, lambda s: s.__setitem__("config", [1, 2])), "'config' is a list"),
    (lambda out: _edit_checkpoint(out, lambda s: s["model"].pop(next(iter(s["model"])))), "does not fit"),
    (lambda out: _edit_checkpoint(out, lambda s: s.__setitem__("rng", {})), "'rng' lacks"),
])
def test_resume_from_a_damaged_run_is_a_clean_error(tmp_path, capsys, trained_run, damage, needle):
    out = _copy_run(trained_run, tmp_path)
    damage(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = _cli(["fit", "--resume", "--out", out, "--epochs", "1"], capsys)
    _clean_error(code, err, needle, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_debug_shows_the_traceback_and_a_bug_keeps_its_traceback(tmp_path, capsys, monkeypatch):
    code, _, err = _cli(["--debug", "fit", *TINY, "--model", "resnet7", "--out", tmp_path / "r"], capsys)
    assert code == 2 and "Traceback" in err and err.rstrip().splitlines()[-1].startswith("auxtrain: error:")
    monkeypatch.setenv("AUXTRAIN_DEBUG", "1")
    code, _, err = _cli(["fit", *TINY, "--model", "resnet7", "--out", tmp_path / "r"], capsys)
    assert code == 2 and "Traceback" in err
    monkeypatch.delenv("AUXTRAIN_DEBUG")
    import auxtrain.models

    def broken(pattern=None):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(auxtrain.models, "list_models", broken)
    code, _, err = _cli(["list-models"], capsys)
    assert code == 1 and "Traceback" in err and "ZeroDivisionError" in err and "bug in auxtrain" in err


# -- item 2: a full disk leaves no .tmp file and says how much space is needed ---------------------

def test_atomic_write_removes_its_temp_file_when_the_disk_fills(tmp_path, monkeypatch):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(WriteError, match=f"cannot write {target}: the disk is full .it needs 5.0 kB"):
        atomic_write_bytes(target, b"x" * 5000)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]


def test_fit_and_eval_on_a_full_disk_leave_no_temp_files(tmp_path, capsys, monkeypatch, trained_run):
    import auxtrain.run_dir

    monkeypatch.setattr(auxtrain.run_dir, "free_bytes", lambda path: 20_000)  # config fits, a model not
    out = tmp_path / "run"
    code, _, err = _cli(["fit", *TINY, "--out", out], capsys)
    _clean_error(code, err, out / RunDir.CHECKPOINT, "the disk is full", "free")
    assert not list(out.rglob("*.tmp"))
    report = tmp_path / "report"
    code, _, err = _cli(["eval", "--checkpoint", trained_run / RunDir.MODEL, *EVAL_TINY, "--out", report],
                        capsys)
    _clean_error(code, err, report, "the disk is full")
    assert not list(report.rglob("*.tmp"))


# -- item 3: one writer per run directory -----------------------------------------------------------

def test_a_second_writer_of_a_run_directory_fails_at_once(tmp_path):
    first = RunDir(tmp_path / "run")
    first.prepare()
    with pytest.raises(RunLockedError, match=f"in use by another auxtrain process .pid {os.getpid()}"):
        RunDir(tmp_path / "run", overwrite=True)
    first.release()
    assert not (tmp_path / "run" / run_lock.LOCK_NAME).exists()
    RunDir(tmp_path / "run").prepare()  # free again


_HOLD = ("import sys, time; from auxtrain.run_lock import RunLock; RunLock(sys.argv[1]).acquire(); "
         "print('locked', flush=True); time.sleep(60)")


def test_fit_on_a_folder_another_process_writes_fails_and_a_dead_holder_frees_it(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), *sys.path])}
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, stdout, err = _cli(["fit", *TINY, "--out", out], capsys)
        _clean_error(code, err, f"--out {out} is in use by another auxtrain process (pid {holder.pid})")
        assert "epoch" not in stdout
    finally:
        holder.kill()
        holder.wait()
    assert (out / run_lock.LOCK_NAME).exists()  # left by the killed process: stale, not in the way
    with RunLock(out):
        pass


def test_without_fcntl_a_lock_file_of_a_dead_process_is_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lock, "fcntl", None)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / run_lock.LOCK_NAME).write_text(f"{dead.pid}\n")
    lock = RunLock(tmp_path).acquire()  # the dead process's lock is taken over
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
        RunLock(tmp_path).acquire()
    lock.release()
    assert not (tmp_path / run_lock.LOCK_NAME).exists()


# -- item 4: --overwrite replaces only a previous run, and never the current folder ----------------

def test_overwrite_refuses_a_folder_that_holds_no_run(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("report.md", "config.yaml", "notes.txt"):
        (mine / name).write_text("keep me")
    code, _, err = _cli(["fit", *TINY, "--overwrite", "--out", mine], capsys)
    _clean_error(code, err, mine, "not an auxtrain run", "another --out")
    assert sorted(p.name for p in mine.iterdir()) == ["config.yaml", "notes.txt", "report.md"]


@pytest.mark.parametrize("out", ["", ".", "{cwd}"])
def test_the_current_folder_is_refused_as_out(tmp_path, capsys, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report.md").write_text("keep me")
    code, _, err = _cli(["fit", *TINY, "--overwrite", "--out", out.replace("{cwd}", str(tmp_path))], capsys)
    _clean_error(code, err, "is the current folder", "--out runs/NAME")
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_overwrite_removes_the_previous_runs_files_and_its_corrupted_test_set_only(tmp_path, trained_run):
    out = _copy_run(trained_run, tmp_path)
    cache = out / RunDir.EVAL_CACHE
    cache.mkdir()
    for name in ("gaussian_noise.npy", "labels.npy", "clean.npy", "make_c.json"):
        (cache / name).write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    (out / RunDir.BEST_MODEL).write_bytes(b"old")
    (out / RunDir.TENSORBOARD).mkdir()
    (out / RunDir.TENSORBOARD / "events.out.tfevents.1.host").write_bytes(b"old")
    run = RunDir(out, overwrite=True)
    assert (out / RunDir.CHECKPOINT).exists()  # nothing is removed before training starts
    run.prepare()
    run.release()
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


# -- item 7 (16-bit images): decoded to 8 bit, not clipped to white -----------------------------------

def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 30000], [65535, 257]], dtype=np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")  # really a 16-bit file
    image = load_image(path)
    assert image.dtype == torch.uint8 and image.shape == (3, 2, 2)
    assert image[0].tolist() == [[0, 117], [255, 1]] and torch.equal(image[0], image[2])


def test_a_float_tiff_is_refused_by_name(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.zeros((4, 4), np.float32)).save(path)
    with pytest.raises(DataError, match=f"{path} holds 32-bit floating-point pixels"):
        load_image(path)
