"""RunDir: refuses to overwrite, writes the config and metrics.csv, truncates replayed epochs."""

from __future__ import annotations

import pytest
import torch

from auxtrain.run_dir import RunDir


def test_run_dir_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "something.txt").write_text("x")
    with pytest.raises(ValueError, match="not an auxtrain run .*; pass another --out") as exc:
        RunDir(tmp_path)
    assert "--resume" not in str(exc.value)  # there is nothing to resume
    with pytest.raises(ValueError, match="cannot resume: .* holds no auxtrain run"):
        RunDir(tmp_path, resume=True)
    with pytest.raises(ValueError, match="--overwrite replaces only a previous run"):
        RunDir(tmp_path, overwrite=True)  # not a run: nothing of it may be deleted
    RunDir(tmp_path / "new")  # a missing directory is fine and not created yet
    assert not (tmp_path / "new").exists()


def test_each_refusal_says_what_to_type(tmp_path):
    # A run that stopped before its first checkpoint: config.yaml only. A plain rerun and --resume
    # both fail; each message names the one command that works.
    dead = tmp_path / "dead"
    dead.mkdir()
    (dead / RunDir.CONFIG).write_text("config: {}\n")
    with pytest.raises(ValueError, match="stopped before its first checkpoint.*pass --overwrite") as exc:
        RunDir(dead)
    assert "--resume" not in str(exc.value)
    with pytest.raises(ValueError, match="first checkpoint.*--overwrite instead of --resume"):
        RunDir(dead, resume=True)
    RunDir(dead, overwrite=True)  # the command the messages name
    # A run with a checkpoint: --resume or --overwrite.
    torch.save({}, dead / RunDir.CHECKPOINT)
    with pytest.raises(ValueError, match="already holds a run; pass --resume to continue it, --overwrite"):
        RunDir(dead)
    with pytest.raises(ValueError, match=f"--out {tmp_path / 'none'} does not exist; start the run without"):
        RunDir(tmp_path / "none", resume=True)


def test_run_dir_writes_config_and_metrics_and_truncates_replayed_epochs(tmp_path):
    run = RunDir(tmp_path / "run")
    run.prepare()
    run.write_config({"epochs": 3, "lr": 0.1}, seed=7)
    assert run.read_config() == {"epochs": 3, "lr": 0.1}
    text = run.config_path.read_text()
    assert "seed: 7" in text and "torch:" in text
    for e in (1, 2, 3):
        run.append_metrics({"epoch": e, "lr": 0.1, "loss": 1.0 / e})
    assert [r["epoch"] for r in run.read_metrics()] == ["1", "2", "3"]
    with pytest.raises(ValueError, match="unknown metrics columns"):
        run.append_metrics({"epoch": 4, "bogus": 1})
    torch.save({}, run.checkpoint_path)
    run.release()  # the run ended (fit releases its lock on the way out)
    resumed = RunDir(tmp_path / "run", resume=True)
    resumed.prepare(completed_epochs=2)  # the checkpoint is after epoch 2: epoch 3 will run again
    assert [r["epoch"] for r in resumed.read_metrics()] == ["1", "2"]
    assert not list(run.path.glob("*.tmp"))
