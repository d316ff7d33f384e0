"""`auxtrain fit` from the command line: flags and config files, bad input, resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from auxtrain.cli import main

TINY = ["--dataset", "shapes", "--train-size", "128", "--test-size", "32", "--batch-size", "64",
        "--model", "resnet20", "--no-progress", "--no-eval"]


def _run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_fit_from_config_file_with_flag_overrides(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("epochs: 1\ncorruptions: none\nlr: 0.05\nseed: 3\n")
    out = tmp_path / "run"
    code, stdout, _ = _run_cli(["fit", "-c", str(cfg), *TINY, "--seed", "4", "--out", str(out)], capsys)
    assert code == 0
    assert "epoch   1" in stdout and "clean test accuracy" in stdout
    saved = yaml.safe_load((out / "config.yaml").read_text())["config"]
    assert (saved["lr"], saved["seed"], saved["epochs"], saved["corruptions"]) == (0.05, 4, 1, "none")


@pytest.mark.parametrize("argv,message", [
    (["--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["--model", "resnet7"], "unknown model name 'resnet7'"),
    (["--corruptions", "gaussian_nois"], "gaussian_nois"),
    (["--dataset", "cifar10", "--data-root", "{tmp}/nothing"], "{tmp}/nothing"),
    (["--stage-two-start", "1"], "--stage-two-start 1 is not an epoch of the run: with --epochs 1"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, _, err = _run_cli(["fit", *TINY, "--epochs", "1", *argv, "--out", str(out)], capsys)
    assert code == 2
    assert message.replace("{tmp}", str(tmp_path)) in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("argv,flag", [
    (["--eval-corruptions", "bogus"], "--eval-corruptions"),
    (["--eval-severities", "9"], "--eval-severities"),
    (["--eval-root", "{tmp}/missing"], "--eval-root {tmp}/missing does not exist"),
    (["--eval-root", "{tmp}"], "--eval-root"),  # a folder, but no -C set in it
    (["--eval-size", "0"], "--eval-size 0"),
    (["--train-size", "0"], "--train-size 0"),
    (["--test-size", "0"], "--test-size 0"),
])
def test_bad_evaluation_and_size_options_fail_before_training(tmp_path, capsys, argv, flag):
    out = tmp_path / "run"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    tiny_eval = [a for a in TINY if a != "--no-eval"]
    code, stdout, err = _run_cli(["fit", *tiny_eval, "--epochs", "1", *argv, "--out", str(out)], capsys)
    assert code == 2 and "epoch" not in stdout  # rejected before the first epoch
    assert flag.replace("{tmp}", str(tmp_path)) in err and "Traceback" not in err
    assert "names=" not in err and "--data-root" not in err
    assert not out.exists()


def test_non_empty_out_is_refused_and_left_alone(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = _run_cli(["fit", *TINY, "--epochs", "1", "--out", str(out)], capsys)
    assert code == 2 and "another --out" in err and "--overwrite" in err and "--resume" not in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_resume_from_a_damaged_checkpoint_fails_without_overwriting(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", *TINY, "--epochs", "1", "--corruptions", "none", "--out", str(out)]) == 0
    ckpt = out / "checkpoint_last.pt"
    data = ckpt.read_bytes()
    for damaged in (data[: len(data) // 3], b"\x00garbage" * 100):  # truncated, corrupt
        ckpt.write_bytes(damaged)
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        capsys.readouterr()
        code, _, err = _run_cli(["fit", "--resume", "--out", str(out), "--epochs", "2"], capsys)
        assert code == 2 and str(ckpt) in err and "corrupt or truncated" in err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def _fit_process(out, *extra):
    argv = [sys.executable, "-m", "auxtrain", "fit", *TINY, "--train-size", "256", "--epochs", "3",
            "--corruptions", "noise", "--out", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _weights(path):
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state)


@pytest.mark.slow
def test_run_killed_with_sigkill_and_resumed_ends_bit_identical(tmp_path):
    reference = _fit_process(tmp_path / "reference")
    killed = _fit_process(tmp_path / "killed")
    ckpt = tmp_path / "killed" / "checkpoint_last.pt"
    deadline = time.time() + 120
    while not ckpt.exists():  # wait for the first epoch's checkpoint, then kill mid-way through epoch 2
        assert killed.poll() is None, killed.communicate()
        assert time.time() < deadline, "no checkpoint after 120 s"
        time.sleep(0.05)
    time.sleep(0.3)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / "model_plain.pt").exists()
    argv = [sys.executable, "-m", "auxtrain", "fit", "--resume", "--out", str(tmp_path / "killed")]
    resumed = subprocess.run(argv,
                             capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr
    assert reference.wait() == 0, reference.communicate()
    a = _weights(tmp_path / "reference" / "model_plain.pt")
    b = _weights(tmp_path / "killed" / "model_plain.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path / "killed" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]  # the replayed epoch is logged once


def test_list_commands(capsys):
    code, out, _ = _run_cli(["list-models", "resnet2*"], capsys)
    assert code == 0 and out.split() == ["resnet20"]
    code, out, _ = _run_cli(["list-corruptions"], capsys)
    assert code == 0 and "gaussian_noise" in out and out.startswith("noise")
    assert main(["list-models", "nothing*"]) == 2


@pytest.mark.parametrize("argv", [["list-models"], ["list-corruptions"], ["fit", "--help"]])
def test_closed_stdout_ends_a_listing_quietly(argv):
    # `auxtrain list-models | head -1`, deterministically: the reading end is closed before any write.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "auxtrain", *argv], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 0 and proc.stderr == ""


def test_diverged_first_epoch_names_no_checkpoint_and_the_rerun_says_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    # lr 1e30: the first step is finite, the second is not; no epoch ends, so no checkpoint exists.
    code, _, err = _run_cli(["fit", *TINY, "--epochs", "1", "--lr", "1e30", "--out", str(out)], capsys)
    assert code == 1 and "No checkpoint was written" in err and "last good checkpoint" not in err
    assert f"--overwrite --out {out}" in err and not (out / "checkpoint_last.pt").exists()
    code, _, err = _run_cli(["fit", *TINY, "--epochs", "1", "--out", str(out)], capsys)  # a plain rerun
    assert code == 2 and "before its first checkpoint" in err and "--overwrite" in err
    code, _, err = _run_cli(["fit", "--resume", "--out", str(out)], capsys)
    assert code == 2 and "--overwrite instead of --resume" in err
    rerun = ["fit", *TINY, "--epochs", "1", "--corruptions", "none", "--overwrite", "--out", str(out)]
    assert main(rerun) == 0  # the command the messages name


@pytest.mark.parametrize("where,expected", [
    ("_datasets", "interrupted before anything was written"),  # during start-up
    ("_train_epoch", "interrupted before the first checkpoint, so there is nothing to resume; start again "
                     "with the same options and --overwrite"),
])
def test_ctrl_c_names_no_checkpoint_that_does_not_exist(tmp_path, capsys, monkeypatch, where, expected):
    from auxtrain import training

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, where, interrupt)
    out = tmp_path / "run"
    code, _, err = _run_cli(["fit", *TINY, "--epochs", "1", "--out", str(out)], capsys)
    assert code == 130 and expected in err and "checkpoint is saved" not in err
    assert not (out / "checkpoint_last.pt").exists()


def test_non_finite_lr_is_rejected_before_training(tmp_path, capsys):
    code, _, err = _run_cli(["fit", *TINY, "--epochs", "1", "--lr", "inf", "--out", str(tmp_path / "r")],
                            capsys)
    assert code == 2 and "--lr inf: must be a positive finite number" in err
    assert not (tmp_path / "r").exists()


def test_ctrl_c_after_a_checkpoint_says_resume(tmp_path):
    from auxtrain.cli import _interrupted_message

    (tmp_path / "config.yaml").write_text("config: {}\n")
    (tmp_path / "checkpoint_last.pt").write_bytes(b"")
    message = _interrupted_message(str(tmp_path))
    assert message.endswith(f"continue with: auxtrain fit --resume --out {tmp_path}")


def test_closed_stdout_during_fit_exits_141_with_a_note(tmp_path, capsys, monkeypatch):
    from auxtrain import training
    from auxtrain.cli import EXIT_BROKEN_PIPE

    def closed(*args, **kwargs):  # as when the reader of the epoch lines has gone away
        raise BrokenPipeError

    monkeypatch.setattr(training, "fit", closed)
    code, _, err = _run_cli(["fit", *TINY, "--epochs", "1", "--out", str(tmp_path / "r")], capsys)
    assert code == EXIT_BROKEN_PIPE == 141 and "broken pipe" in err and "Traceback" not in err
