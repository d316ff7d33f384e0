"""`auxtrain fit` under torchrun: 2 CPU processes with the gloo backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from auxtrain.distributed import DistContext, init_distributed, run_on_main

TINY = ["--dataset", "shapes", "--train-size", "256", "--test-size", "64", "--batch-size", "64",
        "--model", "resnet20", "--corruptions", "noise", "--schedule", "constant", "--lr", "0.05",
        "--no-progress", "--no-eval"]


def _torchrun(args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, **kw)


def test_without_torchrun_the_context_is_a_single_process(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    ctx, device = init_distributed("cpu")
    assert ctx == DistContext() and not ctx.enabled and ctx.is_main and device == torch.device("cpu")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert init_distributed("cpu")[0] == DistContext()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' must be an integer"):
        init_distributed("cpu")
    assert run_on_main(lambda: 42, DistContext()) == 42
    with pytest.raises(ValueError, match="bad"):
        run_on_main(lambda: (_ for _ in ()).throw(ValueError("bad")), DistContext())


def _as_two_epoch_run_stopped_after_epoch_1(out):
    """Make the finished 1-epoch run in ``out`` a 2-epoch run stopped after epoch 1.

    --resume cannot change --epochs. With TINY's constant LR (warm-up counts steps, not the run)
    and stage one throughout the first epoch at both lengths, that epoch is the same training.
    """
    import yaml

    ckpt = torch.load(out / "checkpoint_last.pt", weights_only=True)
    ckpt["config"]["epochs"] = 2
    torch.save(ckpt, out / "checkpoint_last.pt")
    doc = yaml.safe_load((out / "config.yaml").read_text())
    doc["config"]["epochs"] = 2
    (out / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.mark.slow
def test_torchrun_two_processes_write_one_run_dir_and_resume(tmp_path):
    out = tmp_path / "ddp"
    first = _torchrun(["-m", "auxtrain", "fit", *TINY, "--epochs", "1", "--out", str(out)])
    assert first.returncode == 0, first.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint_last.pt", "config.yaml", "metrics.csv",
                                                     "model_plain.pt"]
    assert first.stdout.count("epoch   1") == 1  # only rank 0 logs
    assert "world_size: 2" in (out / "config.yaml").read_text()
    _as_two_epoch_run_stopped_after_epoch_1(out)
    resumed = _torchrun(["-m", "auxtrain", "fit", "--resume", "--out", str(out)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = (out / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    assert torch.load(out / "checkpoint_last.pt", weights_only=True)["epoch"] == 2


_WORKER = """
import json, os, sys, torch
from auxtrain.training import TrainConfig, fit
cfg = TrainConfig(**json.loads(sys.argv[1]))
result = fit(cfg)
rank = int(os.environ["RANK"])
params = {k: v for k, v in result.model.named_parameters()}
torch.save(params, os.path.join(sys.argv[2], f"params{rank}.pt"))
if rank == 0:
    json.dump(result.metrics, open(os.path.join(sys.argv[2], "metrics.json"), "w"))
else:
    assert result.run_dir is None and result.model_path is None
"""


@pytest.mark.slow
def test_two_processes_keep_identical_parameters_and_match_a_single_process_run(tmp_path):
    from auxtrain.training import TrainConfig, fit

    options = {"dataset": "shapes", "train_size": 256, "test_size": 64, "batch_size": 64, "model": "resnet20",
               "corruptions": "noise", "schedule": "constant", "lr": 0.05, "epochs": 2, "progress": False,
               "eval": False}
    worker = tmp_path / "worker.py"
    worker.write_text(_WORKER)
    run = _torchrun([str(worker), json.dumps({**options, "out": str(tmp_path / "ddp")}), str(tmp_path)])
    assert run.returncode == 0, run.stderr[-3000:]
    p0 = torch.load(tmp_path / "params0.pt", weights_only=True)
    p1 = torch.load(tmp_path / "params1.pt", weights_only=True)
    assert p0.keys() == p1.keys() and all(torch.equal(p0[k], p1[k]) for k in p0)

    # Same global batch (2 x 32 vs 64) and schedule in one process. Not bit-equal by design: batch-norm
    # statistics are per process (32 images per rank) and each rank draws its own crops and corruptions,
    # so we compare the training curves within a tolerance.
    single = fit(TrainConfig(**{**options, "out": str(tmp_path / "single")}))
    ddp_rows = json.load(open(tmp_path / "metrics.json"))
    assert len(ddp_rows) == len(single.metrics) == 2
    for a, b in zip(ddp_rows, single.metrics, strict=True):
        assert a["lr"] == b["lr"] and a["stage"] == b["stage"]
        assert a["loss"] == pytest.approx(b["loss"], rel=0.25)
        assert abs(a["train_acc"] - b["train_acc"]) < 25


# -- make-c and eval under torchrun: the work is shared, the result is that of one process ----------

_C_WORKER = """
import json, sys
import numpy as np, torch
import corruptions._c_files as c_files
c_files.CELL_PIXELS = 2 * 16 * 16  # cells of 2 images, so the ranks share the cells of one block too
from corruptions import make_c
from auxtrain import evaluation
from auxtrain.distributed import init_distributed

class MeanColour(torch.nn.Module):
    def forward(self, x):
        return x.mean((2, 3))

ctx, _ = init_distributed("cpu")
rng = np.random.default_rng(0)
images, labels = rng.integers(0, 256, (7, 16, 16, 3), dtype=np.uint8), rng.integers(0, 3, 7)
out = sys.argv[1]
make_c(images, labels, out + "/c", names=["gaussian_noise", "shot_noise", "contrast"], severities=(1, 4),
       seed=5, progress=False, distributed=True)
result = evaluation.evaluate(MeanColour(), out + "/c", progress=False, out_dir=out + "/report",
                             distributed=ctx)
assert (result.out_dir is None) == (ctx.rank != 0)
json.dump(result.errors.to_dict("list"), open(f"{out}/errors{ctx.rank}.json", "w"))
"""


@pytest.mark.slow  # two torchrun processes (a few seconds each to import torch)
def test_make_c_and_eval_under_torchrun_equal_one_process(tmp_path, monkeypatch):
    import numpy as np
    import pandas as pd

    import corruptions._c_files as c_files
    from auxtrain import evaluation
    from corruptions import make_c

    worker = tmp_path / "worker.py"
    worker.write_text(_C_WORKER)
    run = _torchrun([str(worker), str(tmp_path / "ddp")])
    assert run.returncode == 0, run.stderr[-3000:]

    monkeypatch.setattr(c_files, "CELL_PIXELS", 2 * 16 * 16)
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (7, 16, 16, 3), dtype=np.uint8), rng.integers(0, 3, 7)
    names = ["gaussian_noise", "shot_noise", "contrast"]
    single = make_c(images, labels, tmp_path / "one" / "c", names=names, severities=(1, 4), seed=5,
                    progress=False, threads=1)
    ddp = tmp_path / "ddp" / "c"
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())
    for path in single.iterdir():  # every .npy and make_c.json (with its checksums), byte for byte
        assert (ddp / path.name).read_bytes() == path.read_bytes(), path.name

    class MeanColour(torch.nn.Module):
        def forward(self, x):
            return x.mean((2, 3))

    result = evaluation.evaluate(MeanColour(), single, progress=False, out_dir=tmp_path / "one" / "report")
    for rank in (0, 1):  # every rank got the whole table
        gathered = pd.DataFrame(json.load(open(tmp_path / "ddp" / f"errors{rank}.json")))
        pd.testing.assert_frame_equal(gathered, result.errors, check_dtype=False)
    report = tmp_path / "ddp" / "report"
    assert (report / "errors.csv").read_bytes() == (tmp_path / "one" / "report" / "errors.csv").read_bytes()
    assert json.loads((report / "summary.json").read_text()) == \
        json.loads((tmp_path / "one" / "report" / "summary.json").read_text())


@pytest.mark.slow  # torchrun -m auxtrain make-c: two processes importing auxtrain.data
def test_torchrun_make_c_command_writes_the_bytes_of_one_process(tmp_path):
    from auxtrain.cli import main

    args = ["make-c", "--dataset", "shapes", "--test-size", "40", "--corruptions", "contrast,shot_noise,fog",
            "--severities", "1,3", "--device", "cpu", "--no-progress"]
    run = _torchrun(["-m", "auxtrain", *args, "--out", str(tmp_path / "ddp")])
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("wrote 3 corruption files") == 1  # rank 0 reports
    assert run.stderr.count("auxtrain: warning: ") == 1 and "RobustBench" in run.stderr
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    for path in (tmp_path / "one").iterdir():
        assert (tmp_path / "ddp" / path.name).read_bytes() == path.read_bytes(), path.name
