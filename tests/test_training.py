"""fit() on tiny shapes runs: files written, baselines, Ctrl-C and resume, non-finite loss, splits."""

from __future__ import annotations

import math

import pytest
import torch

from auxtrain.run_dir import RunDir

# ---------------------------------------------------------------- fit() on tiny shapes runs

TINY = {"dataset": "shapes", "train_size": 128, "test_size": 32, "batch_size": 64, "progress": False,
        "model": "resnet20"}


def _tiny(tmp_path, name="run", **kw):
    from auxtrain.training import TrainConfig

    return TrainConfig(**{**TINY, "epochs": 1, "eval": False, "out": str(tmp_path / name), **kw})


def _weights(path):
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state)


@pytest.fixture(scope="module")
def standard_run(tmp_path_factory):
    """One finished 1-epoch standard-training run, shared (copy it before changing it)."""
    from auxtrain.training import fit

    return fit(_tiny(tmp_path_factory.mktemp("standard"), corruptions="none", schedule="constant"))


def _copy_run(result, tmp_path):
    import shutil

    shutil.copytree(result.run_dir, tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.slow
def test_two_epoch_run_writes_every_file_and_the_export_reproduces_the_accuracy(tmp_path):
    from auxtrain.data import build_datasets
    from auxtrain.export import load_model
    from auxtrain.models import create_model
    from auxtrain.training import fit

    rows = []
    cfg = _tiny(tmp_path, epochs=2, corruptions="noise,blur", test_size=64, eval=True, eval_size=16,
                eval_corruptions="gaussian_noise,defocus_blur,fog", eval_severities="1,5")
    result = fit(cfg, on_epoch=rows.append)
    run = result.run_dir
    files = ("config.yaml", "metrics.csv", "checkpoint_last.pt", "model_plain.pt", "report.csv", "report.md")
    for name in files:
        assert (run / name).is_file(), name
    assert not list(run.glob("*.tmp"))
    metrics = RunDir(run, resume=True).read_metrics()
    assert [r["epoch"] for r in metrics] == ["1", "2"] and len(rows) == 2
    for col in ("lr", "stage", "loss", "ce", "aux_ce", "distill", "tying", "train_acc", "test_acc"):
        assert metrics[-1][col] != "", col
    assert float(metrics[-1]["test_acc"]) == pytest.approx(result.test_acc)
    config = RunDir(run, resume=True).read_config()
    assert config["epochs"] == 2 and config["seed"] == 0 and config["corruptions"] == "noise,blur"

    # The export: a weights_only file whose state dict loads strictly into a fresh backbone ...
    create_model("resnet20", num_classes=10).load_state_dict(_weights(run / "model_plain.pt"), strict=True)
    # ... and, through load_model (normalisation included), gives the recorded clean test accuracy.
    model = load_model(run / "model_plain.pt")
    assert model.meta["seen_corruptions"][:3] == ["gaussian_noise", "shot_noise", "impulse_noise"]
    _, test_ds, _ = build_datasets("shapes", seed=0, train_size=128, test_size=64)
    images = torch.stack([test_ds[i][0] for i in range(len(test_ds))]).float() / 255
    labels = torch.tensor([test_ds[i][1] for i in range(len(test_ds))])
    with torch.no_grad():
        acc = 100.0 * (model(images).argmax(1) == labels).float().mean().item()
    assert acc == pytest.approx(result.test_acc)
    report = result.report
    assert {"gaussian_noise", "defocus_blur", "fog"} <= set(report["corruption"])
    assert set(report["severity"]) >= {1, 5}


def test_standard_training_run(standard_run):
    row = standard_run.metrics[0]
    assert "aux_ce" not in row and "distill" not in row and math.isfinite(row["loss"])
    assert (standard_run.run_dir / "model_plain.pt").is_file()
    assert [n for n, _ in standard_run.model.named_modules() if "aux" in n] == []


def test_augment_baseline_runs(tmp_path):
    from auxtrain.training import fit

    result = fit(_tiny(tmp_path, mode="augment", corruptions="gaussian_noise"))
    row = result.metrics[0]
    assert "aux_ce" not in row and math.isfinite(row["loss"]) and 0 <= row["train_acc"] <= 100


def test_no_selective_bn_ablation_trains_with_plain_batch_norm(tmp_path, monkeypatch):
    import auxtrain.training as training
    from auxtrain.nn import SelectiveBatchNorm2d

    seen = []
    real_build = training._build

    def build(*args, **kwargs):
        job = real_build(*args, **kwargs)
        seen.append(any(isinstance(m, SelectiveBatchNorm2d) for m in job.net.modules()))
        return job

    monkeypatch.setattr(training, "_build", build)
    result = training.fit(_tiny(tmp_path, corruptions="gaussian_noise", selective_bn=False))
    assert seen == [False] and "aux_ce" in result.metrics[0]


@pytest.mark.slow
def test_mid_epoch_ctrl_c_saves_and_resume_ends_bit_identical(tmp_path, monkeypatch):
    """Ctrl-C in the middle of the epoch saves a mid-epoch checkpoint; resuming gives the same weights."""
    import os
    import signal

    import auxtrain.data as data
    from auxtrain.training import fit

    options = {"train_size": 192, "corruptions": "gaussian_noise"}
    reference = fit(_tiny(tmp_path, "reference", **options))
    real_make_views, calls = data.make_views, []

    def make_views_then_ctrl_c(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # during the second of three steps
            os.kill(os.getpid(), signal.SIGINT)
        return real_make_views(*args, **kwargs)

    monkeypatch.setattr(data, "make_views", make_views_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        fit(_tiny(tmp_path, "interrupted", **options))
    ckpt = torch.load(tmp_path / "interrupted" / "checkpoint_last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (0, 2)
    assert not (tmp_path / "interrupted" / "model_plain.pt").exists()
    monkeypatch.setattr(data, "make_views", real_make_views)
    resumed = fit(_tiny(tmp_path, "interrupted", resume=True, **options))
    a, b = _weights(reference.model_path), _weights(resumed.model_path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics[0]["loss"] == pytest.approx(reference.metrics[0]["loss"], rel=1e-12)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from auxtrain.losses import AuxiliaryLoss
    from auxtrain.training import NonFiniteLossError, fit

    real_forward, calls, saved = AuxiliaryLoss.forward, [], []

    def nan_from_epoch_2(self, *args, **kwargs):  # 2 steps per epoch
        calls.append(1)
        total, terms = real_forward(self, *args, **kwargs)
        return (total * float("nan") if len(calls) > 2 else total), terms

    monkeypatch.setattr(AuxiliaryLoss, "forward", nan_from_epoch_2)
    ckpt = tmp_path / "run" / "checkpoint_last.pt"
    with pytest.raises(NonFiniteLossError, match="loss became nan at epoch 2.*checkpoint"):
        fit(_tiny(tmp_path, corruptions="none", schedule="constant", epochs=2),
            on_epoch=lambda row: saved.append(ckpt.read_bytes()))
    assert len(saved) == 1 and ckpt.read_bytes() == saved[0]  # epoch 1's checkpoint


def test_resume_refuses_changed_training_options(standard_run, tmp_path):
    from auxtrain.training import fit

    _copy_run(standard_run, tmp_path)
    with pytest.raises(ValueError, match=r"--resume cannot change --lr: .*--lr 0\.1 \(asked: 0\.5\)"):
        fit(_tiny(tmp_path, corruptions="none", schedule="constant", lr=0.5, resume=True))


def test_logged_lr_is_the_lr_of_the_epochs_last_step_warm_up_included(tmp_path):
    from auxtrain.training import fit

    # 2 steps per epoch, a 2-epoch warm-up: the epoch's last step trains at 2/4 of the LR.
    result = fit(_tiny(tmp_path, corruptions="none", schedule="constant", warmup_epochs=2))
    ckpt = torch.load(result.run_dir / "checkpoint_last.pt", weights_only=True)
    used = ckpt["optimizer"]["param_groups"][0]["lr"]  # set by the last step
    assert result.metrics[0]["lr"] == pytest.approx(0.05) == used
    assert RunDir(result.run_dir, resume=True).read_metrics()[0]["lr"] == "0.05"


def test_resume_refuses_a_changed_epochs_before_writing_anything(standard_run, tmp_path):
    """Milestones, cosine and stage two follow from --epochs: a changed one would change the schedule."""
    from auxtrain.training import fit

    run = _copy_run(standard_run, tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(ValueError, match=r"--resume cannot change --epochs: .*--epochs 1 \(asked: 2\).*"
                                         r"Resume without --epochs.*new run"):
        fit(_tiny(tmp_path, corruptions="none", schedule="constant", epochs=2, resume=True))
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_test_data_and_eval_set_do_not_depend_on_the_training_seed(tmp_path, monkeypatch):
    """Runs of different seeds are compared on the same test and corrupted images (data_seed, eval_seed)."""
    from auxtrain import evaluation
    from auxtrain.training import fit

    seen = []
    real = evaluation.generate_corrupted_testset

    def spy(images, labels, cache_dir, **kw):
        seen.append((images.clone(), kw["seed"]))
        return real(images, labels, cache_dir, **kw)

    monkeypatch.setattr(evaluation, "generate_corrupted_testset", spy)
    for seed in (1, 2):
        fit(_tiny(tmp_path, name=f"s{seed}", seed=seed, corruptions="none", eval=True, eval_size=8,
                  eval_corruptions="fog", eval_severities="1"))
    (a, seed_a), (b, seed_b) = seen
    assert seed_a == seed_b == 0 and torch.equal(a, b)


# ---------------------------------------------------------------- --val-size: a validation split


@pytest.mark.parametrize("kw,message", [
    ({"val_size": 0}, "--val-size 0: must be a positive integer"),
    ({"val_size": 5, "eval_root": "somewhere"}, "drop one of the two"),
    ({"val_size": 5, "dataset": "imagefolder"}, "root/val"),
])
def test_val_size_bad_values_are_clear_errors(kw, message):
    from auxtrain.training import TrainConfig

    with pytest.raises(ValueError, match=message):
        TrainConfig(**{**TINY, **kw}).resolved()


def test_val_size_run_reports_on_corrupted_validation_images(tmp_path, monkeypatch):
    from auxtrain import evaluation
    from auxtrain.training import _datasets, fit

    seen = []
    real = evaluation.generate_corrupted_testset

    def spy(images, labels, cache_dir, **kw):
        seen.append(images.clone())
        return real(images, labels, cache_dir, **kw)

    monkeypatch.setattr(evaluation, "generate_corrupted_testset", spy)
    cfg = _tiny(tmp_path, corruptions="none", val_size=16, eval=True, eval_corruptions="fog",
                eval_severities="1")
    result = fit(cfg)
    val = _datasets(cfg.resolved())[1]
    assert torch.equal(seen[0], torch.stack([val[i][0] for i in range(len(val))]))
    assert "validation split" in (result.run_dir / "report.md").read_text()
