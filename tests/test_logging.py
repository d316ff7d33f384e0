"""Run logs: step lines in a redirected (non-TTY) log, TensorBoard scalars, model_best.pt by validation."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys

import pytest

from auxtrain.run_log import BEST_MODEL, BestModel, RunLog
from auxtrain.train_config import TrainConfig


def _train(loader, sums, step_log, skip=0):
    """What the training loop does per batch: add to ``sums`` (the log only reads it), then tell the log."""
    for step, (_images, target) in enumerate(loader):
        if step < skip:
            continue  # trained before the interruption
        sums["n"] += len(target)
        sums["correct"] += len(target) // 2
        sums["loss"] += 1.5 * len(target)
        step_log.trained(step, len(target))
    return sums


def _loader(steps, batch=4):
    return [(None, list(range(batch))) for _ in range(steps)]


def _lines(interval, steps, skip=0, progress=False):
    stream = io.StringIO()
    log = RunLog(None, interval=interval, progress=progress, epochs=3, stream=stream)
    sums = {"n": 0.0, "correct": 0.0, "loss": 0.0}
    step_log = log.steps(steps, sums, epoch=1, skip=skip, lr=lambda step, total: 0.1 * step / total)
    _train(_loader(steps), sums, step_log, skip)
    return stream.getvalue().splitlines()


def test_a_step_line_after_every_interval_th_batch():
    lines = _lines(interval=3, steps=9)
    assert [line.split("step ")[1].split()[0] for line in lines] == ["3/9", "6/9", "9/9"]
    first = lines[0]
    assert first.startswith("epoch 2/3  step 3/9 ( 33%)  loss 1.5000  acc  50.0%")
    assert "img/s" in first and "lr 0.0222" in first and "ETA 0:00:0" in first


def test_no_line_for_batches_trained_before_a_resume_and_none_when_off():
    steps = [line.split("step ")[1].split()[0] for line in _lines(interval=2, steps=6, skip=3)]
    assert steps == ["4/6", "6/6"]
    assert _lines(interval=0, steps=6) == []
    assert len(_lines(interval=5, steps=4)) == 0     # fewer steps than the interval: epoch lines only


def test_a_progress_bar_on_a_terminal_replaces_the_step_lines():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    log = RunLog(None, interval=1, progress=True, epochs=1, stream=Terminal())
    assert log.interval == 0
    assert RunLog(None, interval=1, progress=True, epochs=1, stream=io.StringIO()).interval == 1


def test_options_are_checked_and_name_the_flag(monkeypatch):
    with pytest.raises(ValueError, match="--log-interval -1"):
        TrainConfig(log_interval=-1).resolved()
    with pytest.raises(ValueError, match="--log-interval True"):
        TrainConfig(log_interval=True).resolved()
    with pytest.raises(ValueError, match="logger"):
        TrainConfig(logger="wandb").resolved()
    monkeypatch.setattr("auxtrain.run_log.tensorboard_available", lambda: False)
    with pytest.raises(ValueError, match="--logger tensorboard needs the tensorboard package: pip install"):
        TrainConfig(logger="tensorboard").resolved()


def test_best_model_is_kept_on_improvement_and_resumes_from_its_record(tmp_path):
    written = []

    def export(path, meta):
        written.append(meta)
        path.write_bytes(b"model")

    best = BestModel(tmp_path, resume=False)
    assert [best.update(acc, epoch, export) for epoch, acc in enumerate([50.0, 40.0, 60.0, math.nan], 1)] == [
        True, False, True, False]
    assert written == [{"best_val_acc": 50.0, "best_epoch": 1}, {"best_val_acc": 60.0, "best_epoch": 3}]
    BestModel(tmp_path, resume=False)
    assert not (tmp_path / BEST_MODEL).exists()  # a new run (--overwrite): the stale file is gone


def test_redirected_fit_logs_steps_writes_tensorboard_and_model_best(tmp_path):
    """A real run with stdout to a file (not a TTY): step lines, event file, model_best.pt loadable."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from auxtrain.export import load_model

    out, log = tmp_path / "run", tmp_path / "fit.log"
    argv = [sys.executable, "-m", "auxtrain", "fit", "--dataset", "shapes", "--train-size", "192",
            "--val-size", "64", "--test-size", "32", "--batch-size", "32", "--model", "resnet20",
            "--epochs", "2",
            "--corruptions", "none", "--no-eval", "--log-interval", "2", "--logger", "tensorboard",
            "--out", str(out)]
    with open(log, "w") as stdout:  # progress bar on (the default): stdout is a file, so steps are logged
        proc = subprocess.run(argv, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=600,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    text = log.read_text()
    assert "epoch 1/2  step 2/6 ( 33%)  loss " in text and "epoch 2/2  step 6/6 (100%)" in text
    assert "img/s" in text and "ETA" in text and "epoch   2" in text
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    assert {"train/loss", "train/acc", "train/images_per_s", "epoch/loss", "epoch/test_acc"} <= set(
        acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("epoch/test_acc")] == [1, 2]
    val = [e.value for e in acc.Scalars("epoch/test_acc")]
    model = load_model(out / BEST_MODEL)
    assert model.meta["best_epoch"] == 1 + val.index(max(val))
    assert model.meta["best_val_acc"] == pytest.approx(max(val), abs=1e-4)
    assert model.meta["test_acc_split"] == "validation"
    assert set(load_model(out / "model_plain.pt").meta) <= set(model.meta)   # the same export, plus the epoch
