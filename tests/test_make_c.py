"""make_c: the CIFAR-C layout, determinism, resumption and errors, on tiny in-memory datasets."""

import importlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from corruptions import corrupt, make_c
from corruptions.make_c import block_seed

# The package re-exports the function make_c, which shadows the module attribute of the same name.
make_c_module = importlib.import_module("corruptions.make_c")


def tiny_dataset(n=6, size=16, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 100, n)
    return images, labels


def test_layout_dtype_label_tiling_and_severity_order(tmp_path):
    images, labels = tiny_dataset()
    out = make_c(
        images, labels, tmp_path / "c", names=["contrast", "gaussian_noise"], batch_size=4, progress=False
    )
    assert out == tmp_path / "c"
    assert sorted(p.name for p in out.iterdir()) == [
        "contrast.npy",
        "gaussian_noise.npy",
        "labels.npy",
        "make_c.json",
    ]
    lab = np.load(out / "labels.npy")
    assert lab.dtype == np.uint8 and lab.shape == (30,)
    np.testing.assert_array_equal(lab, np.tile(labels, 5))
    data = np.load(out / "contrast.npy")
    assert data.dtype == np.uint8 and data.shape == (30, 16, 16, 3)
    for s in range(1, 6):  # rows (s-1)*N .. s*N hold severity s
        np.testing.assert_array_equal(data[(s - 1) * 6 : s * 6], corrupt(images, "contrast", s))
    noisy = np.load(out / "gaussian_noise.npy")
    for s in range(1, 6):  # each (name, severity) block has its own seeded generator, batch by batch
        g = torch.Generator().manual_seed(block_seed(0, "gaussian_noise", s))
        expected = np.concatenate(
            [corrupt(images[i : i + 4], "gaussian_noise", s, generator=g) for i in (0, 4)]
        )
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
    make_c(images, labels, tmp_path / "fresh", names=names, batch_size=4, progress=False)

    calls = {"n": 0}
    real_corrupt = make_c_module.corrupt

    def dying_corrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 14:  # inside impulse_noise (gaussian_noise needs 10 calls)
            raise KeyboardInterrupt
        return real_corrupt(*args, **kwargs)

    monkeypatch.setattr(make_c_module, "corrupt", dying_corrupt)
    with pytest.raises(KeyboardInterrupt):
        make_c(images, labels, tmp_path / "resumed", names=names, batch_size=4, progress=False)
    left = sorted(p.name for p in (tmp_path / "resumed").iterdir())
    assert left == ["gaussian_noise.npy", "labels.npy", "make_c.json"]  # no partial impulse_noise.npy
    done_mtime = os.stat(tmp_path / "resumed" / "gaussian_noise.npy").st_mtime_ns

    calls["n"] = -1000  # no more failures
    make_c(images, labels, tmp_path / "resumed", names=names, batch_size=4, progress=False)
    assert os.stat(tmp_path / "resumed" / "gaussian_noise.npy").st_mtime_ns == done_mtime  # verified, skipped
    for name in [*names, "labels"]:
        assert (tmp_path / "fresh" / f"{name}.npy").read_bytes() == (
            tmp_path / "resumed" / f"{name}.npy"
        ).read_bytes()


def test_complete_files_are_skipped_without_recomputing(tmp_path, monkeypatch):
    images, labels = tiny_dataset()
    make_c(images, labels, tmp_path, names=["contrast"], progress=False)

    def fail(*args, **kwargs):
        raise AssertionError("corrupt() called for a complete file")

    monkeypatch.setattr(make_c_module, "corrupt", fail)
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
            time.sleep(0.05)
            return real(*a, **k)
        m.corrupt = slow
        m.make_c(np.load({str(tmp_path / "images.npy")!r}), np.load({str(tmp_path / "labels_in.npy")!r}),
                 {str(out)!r}, names=["gaussian_noise", "shot_noise"], batch_size=8, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while not (out / "shot_noise.npy.tmp").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the make_c process ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "shot_noise.npy").exists()  # only the .tmp holds the partial file
    assert (out / "gaussian_noise.npy").exists()
    make_c(images, labels, out, names=["gaussian_noise", "shot_noise"], batch_size=8, progress=False)
    make_c(
        images,
        labels,
        tmp_path / "fresh",
        names=["gaussian_noise", "shot_noise"],
        batch_size=8,
        progress=False,
    )
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


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"images": np.zeros((4, 16, 16, 3), np.float32)}, "uint8"),
        ({"images": np.zeros((4, 3, 16, 16), np.uint8)}, r"\(N, H, W, 3\)"),
        ({"labels": np.zeros(3, int)}, "labels must be 6 integers"),
        ({"names": ["contrast", "blurry"]}, "names="),
        ({"severities": (0, 1)}, "severities="),
        ({"batch_size": 0}, "batch_size=0"),
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
    assert "wrote 4 corruption files of 24 images" in capsys.readouterr().out
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
                                    "severities": "1", "batch-size": 8, "device": "cpu", "progress": False,
                                    "out": str(tmp_path / "a")}))
    assert main(["make-c", "-c", str(conf)]) == 0
    assert json.loads((tmp_path / "a" / "make_c.json").read_text())["batch_size"] == 8
    assert main(["make-c", "-c", str(conf), "--batch-size", "4", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "make_c.json").read_text())["batch_size"] == 4
    assert "wrote 1 corruption files of 12 images (severities 1)" in capsys.readouterr().out
    conf.write_text(yaml.safe_dump({"dataset": "shapes", "sevrities": "1"}))
    assert main(["make-c", "-c", str(conf), "--out", str(tmp_path / "c")]) == 2
    assert "unknown make-c option(s) sevrities" in capsys.readouterr().err
    assert main(["make-c", "--out", str(tmp_path / "c")]) == 2
    assert "--dataset is required" in capsys.readouterr().err
