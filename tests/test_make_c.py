"""make_c: the CIFAR-C layout, determinism, resumption, checksums, full disks and errors, on tiny datasets."""

import errno
import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

import corruptions._c_files as c_files
from corruptions import corrupt, make_c
from corruptions.make_c import cell_seed, verify

# The package re-exports the function make_c, which shadows the module attribute of the same name.
make_c_module = importlib.import_module("corruptions.make_c")


def tiny_dataset(n=6, size=16, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 100, n)
    return images, labels


def test_layout_dtype_label_tiling_and_severity_order(tmp_path):
    images, labels = tiny_dataset()
    out = make_c(images, labels, tmp_path / "c", names=["contrast", "gaussian_noise"], progress=False)
    assert out == tmp_path / "c"
    assert sorted(p.name for p in out.iterdir()) == [
        "clean.npy",
        "contrast.npy",
        "gaussian_noise.npy",
        "labels.npy",
        "make_c.json",
    ]
    np.testing.assert_array_equal(np.load(out / "clean.npy"), images)
    lab = np.load(out / "labels.npy")
    assert lab.dtype == np.uint8 and lab.shape == (30,)
    np.testing.assert_array_equal(lab, np.tile(labels, 5))
    data = np.load(out / "contrast.npy")
    assert data.dtype == np.uint8 and data.shape == (30, 16, 16, 3)
    for s in range(1, 6):  # rows (s-1)*N .. s*N hold severity s
        np.testing.assert_array_equal(data[(s - 1) * 6 : s * 6], corrupt(images, "contrast", s))
    noisy = np.load(out / "gaussian_noise.npy")
    for s in range(1, 6):  # the 6 images are one seed cell of each (name, severity) block
        g = torch.Generator().manual_seed(cell_seed(0, "gaussian_noise", s, 0))
        expected = corrupt(images, "gaussian_noise", s, generator=g)
        np.testing.assert_array_equal(noisy[(s - 1) * 6 : s * 6], expected)
    spread = [np.abs(noisy[k * 6 : (k + 1) * 6].astype(float) - images).mean() for k in range(5)]
    assert spread == sorted(spread)


def test_subset_of_severities_names_and_tensor_input(tmp_path):
    images, labels = tiny_dataset()
    make_c(images, labels, tmp_path / "a", names="noise", severities=(2, 5), seed=3, progress=False)
    tensor_images = torch.from_numpy(images).permute(0, 3, 1, 2)
    make_c(
        tensor_images,
        torch.from_numpy(labels),
        tmp_path / "b",
        names="noise",
        severities=(2, 5),
        seed=3,
        progress=False,
    )
    for name in ("gaussian_noise", "shot_noise", "impulse_noise"):
        a, b = np.load(tmp_path / "a" / f"{name}.npy"), np.load(tmp_path / "b" / f"{name}.npy")
        assert a.shape == (12, 16, 16, 3)
        np.testing.assert_array_equal(a, b)
    # severity blocks do not depend on which other severities are written
    make_c(images, labels, tmp_path / "c", names=["shot_noise"], severities=(5,), seed=3, progress=False)
    np.testing.assert_array_equal(
        np.load(tmp_path / "c" / "shot_noise.npy"), np.load(tmp_path / "a" / "shot_noise.npy")[6:]
    )


def test_resume_after_an_interrupted_run_equals_a_fresh_run(tmp_path, monkeypatch):
    images, labels = tiny_dataset()
    names = ["gaussian_noise", "impulse_noise", "fog"]
    make_c(images, labels, tmp_path / "fresh", names=names, progress=False)

    calls = {"n": 0}
    real_corrupt = make_c_module.corrupt

    def dying_corrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 22:  # in impulse_noise: after 3 x 5 kernel fingerprints and gaussian_noise's 5 cells
            raise KeyboardInterrupt
        return real_corrupt(*args, **kwargs)

    monkeypatch.setattr(make_c_module, "corrupt", dying_corrupt)
    with pytest.raises(KeyboardInterrupt):
        make_c(images, labels, tmp_path / "resumed", names=names, threads=1, progress=False)
    left = sorted(p.name for p in (tmp_path / "resumed").iterdir())
    assert left == ["clean.npy", "gaussian_noise.npy", "labels.npy", "make_c.json"]  # no partial file
    done_mtime = os.stat(tmp_path / "resumed" / "gaussian_noise.npy").st_mtime_ns

    calls["n"] = -1000  # no more failures
    make_c(images, labels, tmp_path / "resumed", names=names, progress=False)
    assert os.stat(tmp_path / "resumed" / "gaussian_noise.npy").st_mtime_ns == done_mtime  # verified, skipped
    for name in [*names, "labels", "clean", "make_c"]:
        suffix = ".json" if name == "make_c" else ".npy"
        assert (tmp_path / "fresh" / f"{name}{suffix}").read_bytes() == (
            tmp_path / "resumed" / f"{name}{suffix}"
        ).read_bytes()


def test_complete_files_are_skipped_without_recomputing(tmp_path, monkeypatch):
    images, labels = tiny_dataset()
    make_c(images, labels, tmp_path, names=["contrast"], progress=False)

    def fail(*args, **kwargs):
        raise AssertionError("a cell was computed for a complete file")

    monkeypatch.setattr(make_c_module._Job, "_cell", fail)
    make_c(images, labels, tmp_path, names=["contrast"], progress=False)


@pytest.mark.slow
def test_a_killed_process_leaves_no_partial_file_and_resumes(tmp_path):
    """SIGKILL a real make_c process mid-file, then resume in-process: same bytes as a fresh run."""
    images, labels = tiny_dataset(n=40, size=32)
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "labels_in.npy", labels)
    out = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import importlib, numpy as np, time
        m = importlib.import_module("corruptions.make_c")
        real = m.corrupt
        def slow(*a, **k):
            time.sleep(0.2)
            return real(*a, **k)
        m.corrupt = slow
        m.make_c(np.load({str(tmp_path / "images.npy")!r}), np.load({str(tmp_path / "labels_in.npy")!r}),
                 {str(out)!r}, names=["gaussian_noise", "shot_noise"], threads=1, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    # every .tmp is preallocated up front; files are made in order, so shot_noise is under way now
    while not (out / "gaussian_noise.npy").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the make_c process ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "shot_noise.npy").exists()  # only the .tmp holds the partial file
    assert (out / "gaussian_noise.npy").exists()
    make_c(images, labels, out, names=["gaussian_noise", "shot_noise"], progress=False)
    make_c(images, labels, tmp_path / "fresh", names=["gaussian_noise", "shot_noise"], progress=False)
    assert not (out / "shot_noise.npy.tmp").exists()
    for name in ("gaussian_noise", "shot_noise"):
        assert (out / f"{name}.npy").read_bytes() == (tmp_path / "fresh" / f"{name}.npy").read_bytes()


def test_non_writable_out_dir_is_an_error(tmp_path):
    images, labels = tiny_dataset()
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="out_dir=.*not writable"):
        make_c(images, labels, blocker / "c", names=["contrast"], progress=False)
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(ValueError, match="not writable"):
                make_c(images, labels, ro, names=["contrast"], progress=False)
        finally:
            ro.chmod(0o700)


def test_a_different_run_in_the_same_directory_is_refused(tmp_path):
    images, labels = tiny_dataset()
    make_c(images, labels, tmp_path, names=["contrast"], progress=False)
    with pytest.raises(ValueError, match="seed"):
        make_c(images, labels, tmp_path, names=["contrast"], seed=1, progress=False)
    with pytest.raises(ValueError, match="images_sha256"):
        make_c(images[::-1].copy(), labels, tmp_path, names=["contrast"], progress=False)
    np.save(tmp_path / "fog.npy", np.zeros((3, 16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="fog.npy exists but is not a complete"):
        make_c(images, labels, tmp_path, names=["fog"], progress=False)
    doc = json.loads((tmp_path / "make_c.json").read_text())
    (tmp_path / "make_c.json").write_text(json.dumps({**doc, "format": 1}))
    with pytest.raises(ValueError, match="different format .made by an older make_c"):
        make_c(images, labels, tmp_path, names=["contrast"], progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"images": np.zeros((4, 16, 16, 3), np.float32)}, "uint8"),
        ({"images": np.zeros((4, 3, 16, 16), np.uint8)}, r"\(N, H, W, 3\)"),
        ({"labels": np.zeros(3, int)}, "labels must be 6 integers"),
        ({"names": ["contrast", "blurry"]}, "names="),
        ({"severities": (0, 1)}, "severities="),
        ({"threads": 0}, "threads=0"),
        ({"threads": 1.5}, "threads=1.5"),
        ({"device": "gpu9"}, "device='gpu9'"),
        ({"profile": "big"}, "profile='big'"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    images, labels = tiny_dataset()
    args = {"images": images, "labels": labels, "out_dir": tmp_path, "names": ["contrast"], "progress": False}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_c(**args)


@pytest.mark.slow  # imports auxtrain.data (torchvision datasets): several seconds on a busy machine
def test_cli_make_c_writes_the_layout_and_reports_bad_flags(tmp_path, capsys):
    from auxtrain.cli import main

    out = tmp_path / "shapes-c"
    argv = [
        "make-c",
        "--dataset",
        "shapes",
        "--test-size",
        "12",
        "--out",
        str(out),
        "--corruptions",
        "contrast,noise",
        "--severities",
        "2,4",
        "--device",
        "cpu",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "wrote 4 corruption files of 24 images (severities 2,4), labels.npy and clean.npy" in \
        capsys.readouterr().out
    data = np.load(out / "contrast.npy")
    assert data.shape == (24, 32, 32, 3) and data.dtype == np.uint8
    assert np.load(out / "labels.npy").shape == (24,)
    assert main(argv) == 0  # resumable: a second run verifies and skips
    assert main([*argv[:-3], "--corruptions", "fogg"]) == 2
    assert "'fogg' is neither a corruption nor a subset" in capsys.readouterr().err
    assert main([*argv, "--severities", "0-2"]) == 2
    assert main(["make-c", "--dataset", "cifar10", "--out", str(tmp_path / "x")]) == 2
    assert "--data-root" in capsys.readouterr().err


@pytest.mark.slow  # imports auxtrain.data (torchvision datasets), like the test above
def test_cli_make_c_reads_a_config_file_and_flags_override_it(tmp_path, capsys):
    import json

    import yaml

    from auxtrain.cli import main

    conf = tmp_path / "make_c.yaml"
    conf.write_text(yaml.safe_dump({"dataset": "shapes", "test-size": 12, "corruptions": "contrast",
                                    "severities": "1", "seed": 8, "device": "cpu", "progress": False,
                                    "out": str(tmp_path / "a")}))
    assert main(["make-c", "-c", str(conf)]) == 0
    assert json.loads((tmp_path / "a" / "make_c.json").read_text())["seed"] == 8
    assert main(["make-c", "-c", str(conf), "--seed", "4", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "make_c.json").read_text())["seed"] == 4
    assert "wrote 1 corruption files of 12 images (severities 1)" in capsys.readouterr().out
    conf.write_text(yaml.safe_dump({"dataset": "shapes", "sevrities": "1"}))
    assert main(["make-c", "-c", str(conf), "--out", str(tmp_path / "c")]) == 2
    assert "unknown make-c option(s) sevrities" in capsys.readouterr().err
    assert main(["make-c", "--out", str(tmp_path / "c")]) == 2
    assert "--dataset is required" in capsys.readouterr().err


# -- the seed grid: bytes independent of threads, cell order and process count -----------------


@pytest.fixture
def small_cells(monkeypatch):
    """Seed cells of 2 images at 16 px (the real grid has 1,024 at 32 px), so tests cross cell borders."""
    monkeypatch.setattr(c_files, "CELL_PIXELS", 2 * 16 * 16)


def test_bytes_are_a_function_of_seed_corruption_severity_and_cell_only(tmp_path, small_cells):
    images, labels = tiny_dataset(n=7)  # cells of 2, 2, 2 and 1 image per severity block
    names = ["gaussian_noise", "shot_noise", "spatter"]
    one = make_c(images, labels, tmp_path / "one", names=names, severities=(1, 4), seed=5, threads=1,
                 progress=False)
    three = make_c(images, labels, tmp_path / "three", names=names, severities=(1, 4), seed=5, threads=3,
                   progress=False)
    for name in [*names, "labels", "clean"]:
        assert (one / f"{name}.npy").read_bytes() == (three / f"{name}.npy").read_bytes()
    noisy = np.load(one / "shot_noise.npy")
    for k, severity in enumerate((1, 4)):  # each cell is one corrupt call with its own generator
        for cell, start in enumerate(range(0, 7, 2)):
            g = torch.Generator().manual_seed(cell_seed(5, "shot_noise", severity, cell))
            end = min(start + 2, 7)
            expected = corrupt(images[start:end], "shot_noise", severity, generator=g)
            np.testing.assert_array_equal(noisy[k * 7 + start:k * 7 + end], expected)
    # a cell's bytes do not depend on the other severities or corruptions written with it
    alone = make_c(images, labels, tmp_path / "alone", names=["shot_noise"], severities=(4,), seed=5,
                   progress=False)
    np.testing.assert_array_equal(np.load(alone / "shot_noise.npy"), noisy[7:])


# -- full disks: no SIGBUS, no leftovers, a message with the space needed --------------------------


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_too_little_free_space_is_refused_up_front_with_the_space_needed(tmp_path, monkeypatch):
    images, labels = tiny_dataset()
    real = c_files.shutil.disk_usage
    monkeypatch.setattr(c_files.shutil, "disk_usage", lambda p: real(p)._replace(free=10_000))
    with pytest.raises(ValueError, match=r"not enough disk space in .*needs 0\.0 MB more, 0\.0 MB are free"):
        make_c(images, labels, tmp_path, names=["contrast", "fog"], progress=False)
    assert not (tmp_path / "contrast.npy").exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize("where", ["fallocate", "pwrite"])
def test_a_disk_that_fills_during_the_run_is_a_clean_error_and_leaves_no_tmp(tmp_path, monkeypatch, where):
    images, labels = tiny_dataset()
    make_c(images, labels, tmp_path, names=["contrast"], progress=False)

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "fallocate":
        monkeypatch.setattr(c_files.os, "posix_fallocate", full)
    else:
        monkeypatch.setattr(c_files.os, "pwrite", full)
    with pytest.raises(ValueError, match="not enough disk space in .*free some space or choose another"):
        make_c(images, labels, tmp_path, names=["contrast", "fog"], progress=False)
    assert _leftovers(tmp_path) == [] and not (tmp_path / "fog.npy").exists()
    assert verify(tmp_path) == {"labels.npy": True, "clean.npy": True, "contrast.npy": True}
    monkeypatch.undo()
    make_c(images, labels, tmp_path, names=["contrast", "fog"], progress=False)  # resumes once space is back
    assert np.load(tmp_path / "fog.npy").shape == (30, 16, 16, 3)


# -- checksums and kernel fingerprints -----------------------------------------------------------------


def test_flipped_bytes_are_caught_on_resume_and_on_read(tmp_path):
    from auxtrain.data.corrupted import open_corrupted

    images, labels = tiny_dataset()
    make_c(images, labels, tmp_path, names=["contrast", "fog"], progress=False)
    assert verify(tmp_path) == dict.fromkeys(["labels.npy", "clean.npy", "contrast.npy", "fog.npy"], True)
    open_corrupted(tmp_path)  # verified on construction
    with open(tmp_path / "fog.npy", "r+b") as f:  # same size and header: only the checksum can tell
        f.seek(-100, os.SEEK_END)
        byte = f.read(1)
        f.seek(-100, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0x10]))
    assert verify(tmp_path)["fog.npy"] is False
    with pytest.raises(ValueError, match="fog.npy does not match its sha256 checksum in .*make_c.json"):
        make_c(images, labels, tmp_path, names=["contrast", "fog"], progress=False)
    with pytest.raises(ValueError, match="fog.npy does not match its sha256 checksum"):
        open_corrupted(tmp_path)
    open_corrupted(tmp_path, names="contrast")  # the files not read are not checked


def test_a_file_made_by_an_older_kernel_is_not_reused(tmp_path, monkeypatch):
    import dataclasses

    from corruptions import _registry

    images, labels = tiny_dataset()
    make_c(images, labels, tmp_path, names=["contrast", "fog"], progress=False)
    spec = _registry.get_spec("contrast")
    changed = dataclasses.replace(spec, kernel=lambda x, params, g: spec.kernel(x, params, g) * 0.99)
    monkeypatch.setitem(_registry._REGISTRY, "contrast", changed)  # as if the kernel changed in a release
    with pytest.raises(ValueError, match="contrast.npy was made by another version of the contrast kernel"):
        make_c(images, labels, tmp_path, names=["contrast", "fog"], progress=False)
    make_c(images, labels, tmp_path, names=["fog"], progress=False)  # an unchanged kernel's file is reused


# -- the make-c command: the test images of fit, clean.npy for eval, RobustBench's size ---------------


def test_make_c_fit_and_eval_generate_use_the_same_test_images(fake_cifar10, tmp_path):
    from auxtrain.data import run_splits
    from auxtrain.eval_config import MakeCConfig
    from auxtrain.make_c_command import make_c_from_dataset

    root = str(fake_cifar10.root)
    _, fit_test, _ = run_splits("cifar10", root, test_size=7, data_seed=3)
    fit_images = np.stack([fit_test[i][0].permute(1, 2, 0).numpy() for i in range(len(fit_test))])
    assert not np.array_equal(fit_images, fake_cifar10.test_images[:7].transpose(0, 2, 3, 1))  # a subset
    with pytest.warns(UserWarning, match="RobustBench's CIFAR-C loader .* needs 10,000 images"):
        result = make_c_from_dataset(MakeCConfig(dataset="cifar10", data_root=root, test_size=7, data_seed=3,
                                                 out=str(tmp_path / "c"), corruptions="contrast",
                                                 severities="1", progress=False))
    np.testing.assert_array_equal(np.load(result.out_dir / "clean.npy"), fit_images)
    np.testing.assert_array_equal(np.load(result.out_dir / "labels.npy"),
                                  [fit_test[i][1] for i in range(len(fit_test))])

    from auxtrain._eval_data import test_split  # what eval --generate and --clean-dataset read

    images, labels, _ = test_split("cifar10", root, 3, 7)
    np.testing.assert_array_equal(images.permute(0, 2, 3, 1).numpy(), fit_images)
    _, shapes_test, _ = run_splits("shapes", None, train_size=16, test_size=5, data_seed=2)
    shapes, _, _ = test_split("shapes", None, 2, 5)
    assert torch.equal(shapes, torch.stack([shapes_test[i][0] for i in range(5)]))


def test_eval_on_a_make_c_folder_reports_the_clean_error_without_other_input(tmp_path):
    from torch import nn

    from auxtrain.evaluation import corruption_errors

    class MeanColour(nn.Module):  # class = the brightest channel: some right, some wrong
        def forward(self, x):
            return x.mean((2, 3))

    images, labels = tiny_dataset(n=10)
    labels = labels % 3
    make_c(images, labels, tmp_path, names=["contrast"], severities=(1, 2), progress=False)
    errors = corruption_errors(MeanColour(), tmp_path, progress=False)
    clean = errors[errors.corruption == "clean"]
    assert clean.n.tolist() == [10]
    predicted = torch.from_numpy(images).float().mean((1, 2)).argmax(1).numpy()
    assert clean.error.item() == pytest.approx(100 * np.mean(predicted != labels))


def test_batch_size_has_no_effect_and_says_so(tmp_path):
    images, labels = tiny_dataset()
    with pytest.warns(DeprecationWarning, match="batch_size=.... has no effect"):
        make_c(images, labels, tmp_path / "b", names=["shot_noise"], batch_size=2, progress=False)
    make_c(images, labels, tmp_path / "a", names=["shot_noise"], progress=False)
    a, b = (tmp_path / d / "shot_noise.npy" for d in "ab")
    assert a.read_bytes() == b.read_bytes()
