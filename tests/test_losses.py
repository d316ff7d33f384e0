"""Losses: self-distillation, weight tying, DSN companion hinge, decay schedule, composed AuxiliaryLoss."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from auxtrain.losses import (
    LOSS_TERMS,
    AuxiliaryLoss,
    companion_loss,
    jensen_shannon,
    self_distillation,
    tied_parameter_pairs,
    weight_tying_penalty,
)


def _head(in_features: int = 8, num_classes: int = 5) -> nn.Module:
    return nn.Sequential(nn.Linear(in_features, in_features), nn.ReLU(), nn.Linear(in_features, num_classes))


class _OtherHead(nn.Module):
    """A head of different structure with its own final linear (like the attention head)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Linear(8, 8)
        self.fc = nn.Linear(8, 5)

    def get_classifier(self) -> nn.Linear:
        return self.fc


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_self_distillation_is_scaled_kl_with_detached_teacher(temperature):
    torch.manual_seed(0)
    student = torch.randn(6, 10, requires_grad=True)
    teacher = torch.randn(6, 10, requires_grad=True)
    loss = self_distillation(student, teacher, temperature)
    p = F.softmax(teacher / temperature, 1)
    expected = (p * (p.log() - F.log_softmax(student / temperature, 1))).sum(1).mean() * temperature**2
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert teacher.grad is None
    # Same gradient as the authors' soft cross-entropy with the detached teacher.
    student2 = student.detach().clone().requires_grad_(True)
    soft_ce = -(p.detach() * F.log_softmax(student2 / temperature, 1)).sum(1).mean() * temperature**2
    soft_ce.backward()
    torch.testing.assert_close(student.grad, student2.grad)


def test_self_distillation_zero_for_identical_logits_and_validates():
    z = torch.randn(4, 3)
    assert self_distillation(z, z).abs().item() < 1e-6
    with pytest.raises(ValueError, match="temperature"):
        self_distillation(z, z, temperature=0)
    with pytest.raises(ValueError, match="same shape"):
        self_distillation(z, torch.randn(4, 5))


def test_weight_tying_penalty_copy_heads():
    main = _head()
    aux = nn.ModuleList([copy.deepcopy(main) for _ in range(3)])
    assert weight_tying_penalty(main, aux).item() == 0.0
    with torch.no_grad():
        aux[1][0].weight.add_(0.5)  # a hidden layer: tied too for copy heads
    penalty = weight_tying_penalty(main, aux)
    assert penalty.item() == pytest.approx(0.25 * aux[1][0].weight.numel(), rel=1e-5)
    with torch.no_grad():
        aux[2][2].bias.add_(1.0)
    assert weight_tying_penalty(main, aux).item() > penalty.item()
    weight_tying_penalty(main, aux).backward()
    assert main[0].weight.grad.abs().sum() > 0 and aux[1][0].weight.grad.abs().sum() > 0
    torch.testing.assert_close(main[0].weight.grad, -aux[1][0].weight.grad)


def test_weight_tying_penalty_other_structure_ties_final_linear_only():
    main = _head()
    other = _OtherHead()
    pairs = tied_parameter_pairs(main, other)
    assert [q is other.fc.weight or q is other.fc.bias for _, q in pairs] == [True, True]
    expected = (main[2].weight - other.fc.weight).pow(2).sum() + (main[2].bias - other.fc.bias).pow(2).sum()
    torch.testing.assert_close(weight_tying_penalty(main, [other]), expected)
    with torch.no_grad():
        other.gate.weight.add_(3.0)  # untied parameters do not count
    torch.testing.assert_close(weight_tying_penalty(main, [other]), expected)
    assert weight_tying_penalty(main, []).item() == 0.0


def test_companion_loss_hinge_switches_off_below_threshold():
    logits = torch.tensor([[4.0, 0.0], [0.0, 4.0]], requires_grad=True)
    target = torch.tensor([0, 1])
    ce = F.cross_entropy(logits, target)
    loss = companion_loss(logits, target, threshold=0.0)
    torch.testing.assert_close(loss, ce)
    below = companion_loss(logits, target, threshold=ce.item() + 0.1)
    assert below.item() == 0.0
    below.backward()
    assert logits.grad is not None and logits.grad.abs().sum().item() == 0.0
    logits.grad = None
    above = companion_loss(logits, target, threshold=ce.item() / 2)
    torch.testing.assert_close(above, ce - ce.item() / 2)
    above.backward()
    assert logits.grad.abs().sum().item() > 0


def _batch(k: int = 2, b: int = 4, c: int = 5):
    torch.manual_seed(1)
    main = torch.randn(b, c, requires_grad=True)
    aux = [torch.randn(b, c, requires_grad=True) for _ in range(k)]
    return main, aux, torch.randint(0, c, (b,))


def test_auxiliary_loss_composition():
    main_logits, aux_logits, y = _batch()
    main_head = _head(num_classes=5)
    aux_heads = nn.ModuleList([copy.deepcopy(main_head) for _ in aux_logits])
    with torch.no_grad():
        aux_heads[0][2].weight.add_(0.1)
    loss_fn = AuxiliaryLoss(alpha=0.1, beta=0.2, temperature=2.0)
    tying = weight_tying_penalty(main_head, aux_heads)
    total1, terms1 = loss_fn(main_logits, aux_logits, y, tying=tying, tying_weight=0.0)
    total2, terms2 = loss_fn(main_logits, aux_logits, y, tying=tying, tying_weight=3.0)
    assert set(terms1) == {"ce", "aux_ce", "distill", "tying"}
    ce = F.cross_entropy(main_logits, y)
    aux_ce = sum(F.cross_entropy(z, y) for z in aux_logits)
    distill = sum(self_distillation(z, main_logits, 2.0) for z in aux_logits)
    torch.testing.assert_close(terms1["ce"], ce)
    torch.testing.assert_close(total1, ce + 0.1 * aux_ce + 0.2 * distill)
    torch.testing.assert_close(total2, total1 + 3.0 * tying)
    assert tying.item() > 0


def test_auxiliary_loss_plain_and_errors():
    main_logits, _, y = _batch()
    total, terms = AuxiliaryLoss()(main_logits, [], y, tying_weight=1.0)
    assert list(terms) == ["ce"] and set(terms) <= set(LOSS_TERMS)
    torch.testing.assert_close(total, F.cross_entropy(main_logits, y))
    main_logits, aux_logits, y = _batch()
    with pytest.raises(ValueError, match="tying="):
        AuxiliaryLoss()(main_logits, aux_logits, y, tying_weight=1.0)
    AuxiliaryLoss()(main_logits, aux_logits, y, tying_weight=0.0)  # weight 0: no penalty needed
    with pytest.raises(ValueError, match="alpha"):
        AuxiliaryLoss(alpha=-1)
    with pytest.raises(ValueError, match="tying_weight"):
        AuxiliaryLoss()(main_logits, aux_logits, y, tying_weight=-1.0)


def test_auxiliary_loss_companions_weight_and_hinge():
    main_logits, _, y = _batch()
    comps = {"layer2": torch.randn(4, 5), "layer3": torch.randn(4, 5)}
    comp_sum = sum(F.cross_entropy(z, y) for z in comps.values())
    ce = F.cross_entropy(main_logits, y)
    total, terms = AuxiliaryLoss()(main_logits, [], y, companions=comps, companion_weight=0.15)
    torch.testing.assert_close(terms["companion"], comp_sum)
    torch.testing.assert_close(total, ce + 0.15 * comp_sum)
    hinged = AuxiliaryLoss(companion_threshold=100.0)
    total, terms = hinged(main_logits, [], y, companions=list(comps.values()), companion_weight=0.3)
    assert terms["companion"].item() == 0.0
    torch.testing.assert_close(total, ce)


def test_loss_options_are_train_config_fields():
    import dataclasses
    import inspect

    from auxtrain.train_config import TrainConfig

    assert tuple(inspect.signature(AuxiliaryLoss).parameters) == AuxiliaryLoss.OPTIONS
    assert set(AuxiliaryLoss.OPTIONS) <= {f.name for f in dataclasses.fields(TrainConfig)}


def test_jensen_shannon_matches_the_augmix_formula_and_is_zero_for_agreeing_views():
    torch.manual_seed(0)
    clean, aug1, aug2 = (torch.randn(6, 10, requires_grad=True) for _ in range(3))
    # The formula of google-research/augmix cifar.py, written out with probabilities.
    p = [F.softmax(z, dim=1) for z in (clean, aug1, aug2)]
    log_m = torch.clamp((p[0] + p[1] + p[2]) / 3, 1e-7, 1).log()
    expected = sum((q * (q.log() - log_m)).sum(1).mean() for q in p) / 3
    got = jensen_shannon([clean, aug1, aug2])
    assert torch.allclose(got, expected, atol=1e-6) and got > 0
    assert torch.allclose(jensen_shannon([aug2, clean, aug1]), got, atol=1e-6)  # symmetric
    got.backward()
    assert all(z.grad is not None and z.grad.abs().sum() > 0 for z in (clean, aug1, aug2))
    assert jensen_shannon([clean.detach()] * 3).abs() < 1e-6
    with pytest.raises(ValueError, match="at least 2"):
        jensen_shannon([clean])
    with pytest.raises(ValueError, match="one shape"):
        jensen_shannon([clean, aug1[:3]])


def test_auxiliary_loss_adds_the_weighted_jsd_of_the_consistency_logits():
    torch.manual_seed(1)
    main, aug1, aug2 = torch.randn(3, 4, 5)
    y = torch.tensor([0, 1, 2, 3])
    assert "jsd" in LOSS_TERMS
    plain, terms = AuxiliaryLoss()(main, [], y)
    assert "jsd" not in terms
    total, terms = AuxiliaryLoss(jsd_weight=12.0)(main, [], y, consistency=[aug1, aug2])
    assert torch.allclose(terms["jsd"], jensen_shannon([main, aug1, aug2]))
    assert torch.allclose(total, F.cross_entropy(main, y) + 12.0 * terms["jsd"])
    with pytest.raises(ValueError, match="jsd_weight"):
        AuxiliaryLoss(jsd_weight=-1.0)
