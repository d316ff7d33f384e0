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
        if len(calls) == 2:  # building batch 2's views, while batch 1 of 3 trains
            os.kill(os.getpid(), signal.SIGINT)
        return real_make_views(*args, **kwargs)

    monkeypatch.setattr(data, "make_views", make_views_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        fit(_tiny(tmp_path, "interrupted", **options))
    ckpt = torch.load(tmp_path / "interrupted" / "checkpoint_last.pt", weights_only=True)
    # Stopped before batch 2 (0-based 1): its views were drawn ahead, so the checkpoint's generator
    # state must be the one from before those draws for the resumed run to be bit-identical.
    assert (ckpt["epoch"], ckpt["step"]) == (0, 1)
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


# ---------------------------------------------------------------- the step: passes, memory format, batches


def test_domain_passes_channels_last_and_views_ahead_resolve_per_device():
    from auxtrain.auxiliary import AuxiliaryModel
    from auxtrain.models import create_model
    from auxtrain.train_step import use_channels_last, use_separate_passes, use_views_ahead

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    aux = AuxiliaryModel(create_model("resnet20", 4), 2)
    plain = AuxiliaryModel(create_model("resnet20", 4), 0)
    assert use_separate_passes("auto", cpu, aux) and not use_separate_passes("auto", cuda, aux)
    assert use_separate_passes("separate", cuda, aux) and not use_separate_passes("stacked", cpu, aux)
    assert not use_separate_passes("auto", cpu, plain)  # one domain: nothing to separate
    with pytest.raises(ValueError, match="--domain-passes separate needs auxiliary heads"):
        use_separate_passes("separate", cpu, plain)
    assert use_channels_last("auto", cpu) and use_channels_last("auto", cuda)
    assert not use_channels_last("off", cuda) and use_channels_last("on", torch.device("mps"))
    assert not use_channels_last("auto", torch.device("mps"))
    assert not use_views_ahead("auto", cpu) and use_views_ahead("auto", cuda)  # CPU: the step uses every core
    assert use_views_ahead("on", cpu) and not use_views_ahead("off", cuda)


def test_channels_last_of_older_configs_and_domain_passes_are_checked():
    from auxtrain.training import TrainConfig

    assert TrainConfig(**TINY, channels_last=True).resolved().channels_last == "on"  # config.yaml of old runs
    assert TrainConfig(**TINY, channels_last=False).resolved().channels_last == "off"
    with pytest.raises(ValueError, match="channels_last must be one of auto, on, off"):
        TrainConfig(**TINY, channels_last="yes").resolved()
    for kw in ({"mode": "augment"}, {"corruptions": "none"}, {"selective_bn": False}):
        with pytest.raises(ValueError, match="--domain-passes separate runs one pass per selective-BN"):
            TrainConfig(**TINY, domain_passes="separate", **kw).resolved()


def test_batches_built_ahead_equal_a_plain_loop_and_rewind_restores_the_generator():
    from auxtrain.train_step import Batches

    data = [(torch.full((2, 3, 4, 4), i, dtype=torch.uint8), torch.tensor([i, i])) for i in range(5)]

    def make_inputs(images, gen):
        return [images, images + torch.randint(0, 9, images.shape, generator=gen, dtype=torch.uint8)]

    runs = {}
    for background in (False, True):
        gen = torch.Generator().manual_seed(0)
        batches = Batches(data, make_inputs, gen, torch.device("cpu"), background=background)
        runs[background] = [(step, [v.clone() for v in inputs], target) for step, inputs, target in batches]
    assert [r[0] for r in runs[True]] == [0, 1, 2, 3, 4]
    for (s0, x0, t0), (s1, x1, t1) in zip(runs[False], runs[True], strict=True):
        assert s0 == s1 and torch.equal(t0, t1)
        assert all(torch.equal(a, b) for a, b in zip(x0, x1, strict=True))
    # Leave after receiving batch 3 (untrained): the generator goes back to before its draws.
    gen = torch.Generator().manual_seed(0)
    batches = Batches(data, make_inputs, gen, torch.device("cpu"))
    for step, _, _ in batches:
        if step == 3:
            batches.rewind()
            break
    resumed = Batches(data, make_inputs, gen, torch.device("cpu"), skip=3)  # batches 0-2 trained: no draws
    after = [(step, inputs[1]) for step, inputs, _ in resumed]
    assert [step for step, _ in after] == [3, 4]
    assert all(torch.equal(a, r[1][1]) for (_, a), r in zip(after, runs[False][3:], strict=True))


def test_separate_domain_passes_train_like_the_stacked_pass(tmp_path):
    """A tiny run trains alike either way; float32 rounding differs (test_auxiliary checks float64)."""
    from auxtrain.training import fit

    options = {"corruptions": "gaussian_noise,defocus_blur", "channels_last": "off"}
    stacked = fit(_tiny(tmp_path, "stacked", domain_passes="stacked", **options))
    separate = fit(_tiny(tmp_path, "separate", domain_passes="separate", **options))
    a, b = _weights(stacked.model_path), _weights(separate.model_path)
    for k in a:
        torch.testing.assert_close(b[k].double(), a[k].double(), rtol=1e-3, atol=5e-4, msg=k)
    assert separate.metrics[0]["loss"] == pytest.approx(stacked.metrics[0]["loss"], rel=1e-5)


def test_views_built_ahead_or_in_the_step_train_the_same_weights(tmp_path):
    from auxtrain.training import fit

    options = {"corruptions": "gaussian_noise,defocus_blur"}
    ahead = fit(_tiny(tmp_path, "ahead", views_ahead="on", **options))
    inline = fit(_tiny(tmp_path, "inline", views_ahead="off", **options))
    a, b = _weights(ahead.model_path), _weights(inline.model_path)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_saved_with_boolean_channels_last_resumes(standard_run, tmp_path):
    """Runs from before --channels-last auto|on|off saved true/false: --resume reads them as on/off."""
    import yaml

    from auxtrain.resume_options import saved_run_options
    from auxtrain.training import TrainConfig, fit

    run = _copy_run(standard_run, tmp_path)
    ckpt = torch.load(run / "checkpoint_last.pt", weights_only=True)
    del ckpt["config"]["domain_passes"], ckpt["config"]["views_ahead"]
    ckpt["config"]["channels_last"] = False
    torch.save(ckpt, run / "checkpoint_last.pt")
    doc = yaml.safe_load((run / "config.yaml").read_text())
    doc["config"]["channels_last"] = False
    del doc["config"]["domain_passes"], doc["config"]["views_ahead"]
    (run / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    options = saved_run_options(run)
    assert options["channels_last"] is False
    options["out"] = str(run)  # config.yaml names the run it was copied from
    result = fit(TrainConfig(**{**options, "resume": True, "eval": False}))  # finished: nothing to train
    assert result.metrics == [] and result.model_path.is_file()


def test_a_run_saved_before_tying_scale_resumes_with_the_scale_it_trained_with(standard_run, tmp_path):
    """A run saved without --tying-scale trained with the unscaled gamma: --resume keeps it."""
    import yaml

    from auxtrain.resume_options import saved_run_options
    from auxtrain.training import TrainConfig, fit

    run = _copy_run(standard_run, tmp_path)
    ckpt = torch.load(run / "checkpoint_last.pt", weights_only=True)
    del ckpt["config"]["tying_scale"]
    torch.save(ckpt, run / "checkpoint_last.pt")
    doc = yaml.safe_load((run / "config.yaml").read_text())
    del doc["config"]["tying_scale"]
    (run / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    options = {**saved_run_options(run), "out": str(run)}  # `auxtrain fit --resume --out RUN`
    assert options["tying_scale"] == "none"
    with pytest.raises(ValueError, match=r"--resume cannot change --tying-scale: .* --tying-scale none "
                                         r"\(asked: step_lr\)"):
        fit(TrainConfig(**{**options, "tying_scale": "step_lr", "resume": True, "eval": False}))
    result = fit(TrainConfig(**{**options, "resume": True, "eval": False}))  # finished: nothing to train
    assert result.metrics == [] and result.model_path.is_file()
