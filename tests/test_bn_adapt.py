"""Test-time BN adaptation: the mixing formula, the plain numbers at an infinite prior, eval --bn-adapt."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from auxtrain.bn_adapt import batch_weight, bn_adapted


class BNColourModel(nn.Module):
    """BatchNorm over the colour channels, then logits = mean normalised channel: the brightest class."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, num_classes)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(3, num_classes).T)
            self.fc.bias.zero_()
            self.bn.running_mean.copy_(torch.tensor([0.1, 0.4, 0.7]))  # statistics of another domain
            self.bn.running_var.copy_(torch.tensor([0.05, 0.1, 0.2]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(x).mean((2, 3)))


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1),
                         nn.BatchNorm2d(2)).eval()


def _randomise_statistics(net: nn.Module) -> None:
    torch.manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)


def test_adapted_statistics_follow_schneider_et_al_formula():
    net = _net()
    _randomise_statistics(net)
    x = torch.randn(8, 3, 6, 6)
    bn = net[1]
    with torch.no_grad():
        features = net[0](x)
    before = (bn.running_mean.clone(), bn.running_var.clone())
    for prior in (0.0, 8.0, 100.0):
        w = batch_weight(prior, 8)
        assert w == pytest.approx(8 / (prior + 8))
        mean = (1 - w) * before[0] + w * features.mean((0, 2, 3))
        var = (1 - w) * before[1] + w * features.var((0, 2, 3), unbiased=False)
        expected = F.batch_norm(features, mean, var, bn.weight, bn.bias, False, 0.0, bn.eps)
        with bn_adapted(net, prior), torch.no_grad():
            assert torch.allclose(bn(features), expected, atol=1e-6)
    # prior 0 is exactly BN's own training-mode normalisation; nothing of the model is changed
    with bn_adapted(net, 0.0), torch.no_grad():
        train_like = F.batch_norm(features, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
        assert torch.allclose(bn(features), train_like, atol=1e-5)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert not bn._forward_hooks and not bn._forward_pre_hooks and not net.training


def test_infinite_prior_gives_the_plain_outputs_and_bad_input_fails():
    net = _net()
    _randomise_statistics(net)
    x = torch.randn(5, 3, 6, 6)
    with torch.no_grad():
        plain = net(x)
        with bn_adapted(net, math.inf):
            assert torch.equal(net(x), plain)
        with bn_adapted(net, 16.0):
            assert not torch.allclose(net(x), plain)
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        with bn_adapted(nn.Linear(2, 2), 16.0):
            pass
    with pytest.raises(ValueError, match="0 or more"):
        with bn_adapted(net, -1.0):
            pass


def _c_set(root, n=12, size=8):
    """A small CIFAR-C style set: images whose dominant channel is the label, two corruptions."""
    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(3), n // 3)
    root.mkdir()
    for name, shift in (("gaussian_noise", 30), ("fog", 60)):
        blocks = []
        for s in range(1, 6):
            images = rng.integers(0, 120, (n, size, size, 3))
            images[np.arange(n), :, :, labels] += 80 - 10 * s
            blocks.append(np.clip(images + shift * s // 5, 0, 255).astype(np.uint8))
        np.save(root / f"{name}.npy", np.concatenate(blocks))
    np.save(root / "labels.npy", np.tile(labels, 5))
    clean = rng.integers(0, 120, (n, size, size, 3))
    clean[np.arange(n), :, :, labels] += 100
    np.save(root / "clean.npy", clean.astype(np.uint8))


def test_cli_eval_bn_adapt_reports_beside_the_plain_numbers(tmp_path, capsys):
    from auxtrain.cli import main
    from auxtrain.export import save_model
    from auxtrain.models import is_model, register_model

    if not is_model("test_bn_colour"):
        register_model(lambda num_classes=3: BNColourModel(num_classes), name="test_bn_colour")
    ckpt = tmp_path / "m.pt"
    save_model(ckpt, BNColourModel(), model_name="test_bn_colour", num_classes=3, mean=[0, 0, 0],
               std=[1, 1, 1], meta={"seen_corruptions": ["fog"]})
    _c_set(tmp_path / "c")
    base = ["eval", "--checkpoint", str(ckpt), "--data-root", str(tmp_path / "c"), "--device", "cpu",
            "--no-progress", "--batch-size", "6"]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / "errors_bn_adapted.csv").exists()
    plain = pd.read_csv(tmp_path / "plain" / "errors.csv")
    for prior, out in (("inf", "inf"), ("0", "zero")):
        assert main([*base, "--out", str(tmp_path / out), "--bn-adapt", "--bn-prior", prior]) == 0
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / out / "errors.csv"), plain)  # never replaced
    inf = pd.read_csv(tmp_path / "inf" / "errors_bn_adapted.csv")
    zero = pd.read_csv(tmp_path / "zero" / "errors_bn_adapted.csv")
    pd.testing.assert_frame_equal(inf, plain)  # an infinite prior is the running statistics
    assert not np.allclose(zero["error"], plain["error"])  # batch statistics change the predictions
    summary = json.loads((tmp_path / "zero" / "summary.json").read_text())
    assert summary["bn_statistics"] == "running"
    statistics = summary["bn_adapted"]["statistics"]
    assert "prior N = 0" in statistics and "n = 6" in statistics
    assert summary["clean_error_bn_adapted"] == pytest.approx(zero["error"][0], abs=1e-3)  # CSV: 4 decimals
    assert summary["clean_error"] == pytest.approx(plain["error"][0], abs=1e-3)
    assert "mce_bn_adapted" in summary and summary["bn_adapted"]["unseen_mean"] is not None
    report = (tmp_path / "zero" / "report.md").read_text()
    assert "## Test-time BN adaptation" in report and "running statistics" in report
    assert "errors_bn_adapted.csv" in capsys.readouterr().out
    assert main([*base, "--out", str(tmp_path / "bad"), "--bn-adapt", "--bn-prior", "-1"]) == 2
    assert "--bn-prior -1.0 must be a number, 0 or more" in capsys.readouterr().err


def test_fit_final_report_has_the_bn_adapted_columns(tmp_path):
    from auxtrain.training import TrainConfig, fit

    cfg = TrainConfig(dataset="shapes", train_size=64, test_size=16, batch_size=32, epochs=1,
                      model="resnet20",
                      progress=False, corruptions="none", eval=True, eval_size=8, eval_corruptions="noise",
                      eval_severities="1,5", bn_adapt=True, bn_prior=math.inf, out=str(tmp_path / "run"))
    fit(cfg)
    plain = pd.read_csv(tmp_path / "run" / "errors.csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "run" / "errors_bn_adapted.csv"), plain)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["clean_error_bn_adapted"] == summary["clean_error"]
    assert "prior N = inf" in summary["bn_adapted"]["statistics"]
