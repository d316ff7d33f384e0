"""Losses of auxiliary training (Zhang et al. 2020) and deep supervision (Lee et al. 2015; Wang et al. 2015).

With main logits ``z0`` on the clean chunk and auxiliary logits ``zj`` on branch j's corrupted
copy of the same images (method.md, section 1)::

    L = CE(z0, y) + alpha * sum_j CE(zj, y)
      + beta * sum_j self_distillation(zj, z0, T)
      + gamma(t) * weight_tying_penalty(main_head, aux_heads)
      + w(t) * sum_m companion_loss(companion_m, y, threshold)

AugMix (Hendrycks et al. 2020) replaces the auxiliary terms by a consistency term over the main
head's logits on the clean image and its AugMix views: ``L = CE(z0, y) + jsd_weight *
jensen_shannon([z0, z_aug1, z_aug2])`` (the paper's lambda = 12).

``gamma(t)`` is 0 in stage one and ``gamma`` in stage two; ``w(t)`` is the companion weight,
optionally decayed linearly over training; both come from :mod:`auxtrain.schedule`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "LOSS_TERMS",
    "self_distillation",
    "weight_tying_penalty",
    "tied_parameter_pairs",
    "companion_loss",
    "jensen_shannon",
    "AuxiliaryLoss",
]

# The names of the loss terms, in logging order: metrics.csv columns, epoch lines and the
# AuxiliaryLoss terms dict all use this one tuple. A new term is added here and in AuxiliaryLoss.
LOSS_TERMS = ("ce", "aux_ce", "distill", "tying", "companion", "jsd")


def self_distillation(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Input-aware self-distillation: ``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, batch mean.

    The teacher (the main head on the clean image) is detached, so only the student (an auxiliary
    head on the corrupted copy) and the layers below it receive gradients. The gradient equals that
    of the authors' soft cross-entropy.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student_logits {tuple(student_logits.shape)} and teacher_logits "
            f"{tuple(teacher_logits.shape)} must have the same shape (one row per image, same classes)"
        )
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return kl * (temperature * temperature)


def _final_linear(head: nn.Module) -> nn.Linear:
    if isinstance(head, nn.Linear):
        return head
    getter = getattr(head, "get_classifier", None)
    if callable(getter):
        return getter()
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"head {type(head).__name__} has no nn.Linear layer to tie")
    return linears[-1]


def tied_parameter_pairs(
    main_head: nn.Module, aux_head: nn.Module
) -> list[tuple[nn.Parameter, nn.Parameter]]:
    """The (main, auxiliary) parameter pairs the weight-tying penalty pulls together.

    If the two heads have the same structure (same parameter names and shapes, e.g. a ``copy``
    head), every parameter is tied; otherwise (e.g. an ``attention`` head) only the final linear
    layer's weight and bias (found with ``get_classifier()``, else the last ``nn.Linear``).
    """
    main_named = list(main_head.named_parameters())
    aux_named = list(aux_head.named_parameters())
    if [(n, p.shape) for n, p in main_named] == [(n, p.shape) for n, p in aux_named]:
        return [(p, q) for (_, p), (_, q) in zip(main_named, aux_named, strict=True)]
    main_fc, aux_fc = _final_linear(main_head), _final_linear(aux_head)
    if main_fc.weight.shape != aux_fc.weight.shape:
        raise ValueError(
            f"cannot tie final linear layers of shapes {tuple(main_fc.weight.shape)} and "
            f"{tuple(aux_fc.weight.shape)}; the heads must classify the same features into the same classes"
        )
    pairs = [(main_fc.weight, aux_fc.weight)]
    if main_fc.bias is not None and aux_fc.bias is not None:
        pairs.append((main_fc.bias, aux_fc.bias))
    return pairs


def weight_tying_penalty(main_head: nn.Module, aux_heads: Iterable[nn.Module]) -> torch.Tensor:
    """Sum over auxiliary heads of the squared L2 distance between their tied parameters and the main head's.

    Both sides receive gradients (the heads are pulled towards each other), as in the authors' code.
    Tied parameters: see :func:`tied_parameter_pairs`. Returns a scalar (0 with no auxiliary heads).
    """
    total = None
    for aux_head in aux_heads:
        for p, q in tied_parameter_pairs(main_head, aux_head):
            term = (p - q).pow(2).sum()
            total = term if total is None else total + term
    if total is None:
        ref = next(main_head.parameters(), None)
        return torch.zeros((), device=None if ref is None else ref.device)
    return total


def companion_loss(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Deeply-supervised nets' hinged companion loss ``max(CE(logits, target) - threshold, 0)``.

    Once a companion's cross-entropy falls below ``threshold`` its term (and its gradient) is zero,
    so a layer that already classifies well stops being pushed (Lee et al. 2015).
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    return torch.clamp(F.cross_entropy(logits, target) - threshold, min=0.0)


def jensen_shannon(logits: Sequence[torch.Tensor], floor: float = 1e-7) -> torch.Tensor:
    """AugMix's Jensen-Shannon consistency ``mean_k KL(p_k || M)``, M the mean of the p_k; batch mean.

    ``p_k = softmax(logits[k])``; every distribution receives gradients (none is a fixed target).
    As in the paper's code (google-research/augmix cifar.py), ``M`` is clamped to [floor, 1]
    before its log, so a class all views give ~0 cannot make the divergence explode.
    """
    if len(logits) < 2:
        raise ValueError(f"jensen_shannon needs at least 2 sets of logits, got {len(logits)}")
    shapes = {tuple(z.shape) for z in logits}
    if len(shapes) != 1:
        raise ValueError(f"jensen_shannon: the logits must have one shape (one row per image), got "
                         f"{sorted(shapes)}")
    log_p = [F.log_softmax(z, dim=1) for z in logits]
    log_mixture = torch.clamp(sum(lp.exp() for lp in log_p) / len(log_p), floor, 1.0).log()
    return sum(F.kl_div(log_mixture, lp, reduction="batchmean", log_target=True) for lp in log_p) / len(log_p)


class AuxiliaryLoss(nn.Module):
    """The composed objective; returns the total and each named, unweighted term for logging.

    The constant weights are set here; the time-dependent ones (the tying weight, 0 in stage one,
    and the companion weight) come from :class:`auxtrain.schedule.TrainingSchedule` with every
    call, so the loss knows nothing of epochs.

    Args:
        alpha: weight of the auxiliary heads' cross-entropy (authors: 0.05).
        beta: weight of the self-distillation term (authors: 0.05).
        temperature: distillation temperature T (authors: 1).
        companion_threshold: DSN hinge threshold on each companion's cross-entropy (0 = no hinge).
        jsd_weight: weight of AugMix's Jensen-Shannon consistency term (paper: 12).

    ``forward(main_logits, aux_logits, target, ...)`` returns ``(total, terms)``; ``terms`` holds
    ``"ce"`` and, when they apply, ``"aux_ce"`` and ``"distill"`` (summed over branches),
    ``"tying"`` (whenever a penalty is passed, added to the total only with a positive weight)
    , ``"companion"`` (summed over companions) and ``"jsd"`` (when ``consistency`` logits are
    passed), each unweighted; the names are ``LOSS_TERMS``.
    """

    # Constructor options; the training run takes them from the TrainConfig fields of the same names.
    OPTIONS = ("alpha", "beta", "temperature", "companion_threshold", "jsd_weight")

    def __init__(
        self,
        alpha: float = 0.05,
        beta: float = 0.05,
        temperature: float = 1.0,
        companion_threshold: float = 0.0,
        jsd_weight: float = 12.0,
    ) -> None:
        super().__init__()
        for name, value in (("alpha", alpha), ("beta", beta), ("companion_threshold", companion_threshold),
                            ("jsd_weight", jsd_weight)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.alpha, self.beta, self.temperature = alpha, beta, temperature
        self.companion_threshold, self.jsd_weight = companion_threshold, jsd_weight

    def forward(
        self,
        main_logits: torch.Tensor,
        aux_logits: Sequence[torch.Tensor],
        target: torch.Tensor,
        *,
        tying: torch.Tensor | None = None,
        tying_weight: float = 0.0,
        companions: Mapping[str, torch.Tensor] | Sequence[torch.Tensor] | None = None,
        companion_weight: float = 0.0,
        consistency: Sequence[torch.Tensor] = (),
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its terms.

        Args:
            main_logits: the main head on the clean images (B, classes).
            aux_logits: one (B, classes) tensor per auxiliary head, on its corrupted copies.
            target: the B labels.
            tying: the weight-tying penalty (``AuxiliaryModel.weight_tying_penalty()``), if any.
            tying_weight: its weight now (0 in stage one).
            companions: deep-supervision companion logits on the clean images, if any.
            companion_weight: their weight now.
            consistency: the main head's logits on AugMix views of the same images (B, classes)
                each; adds ``jsd_weight * jensen_shannon([main_logits, *consistency])``.
        """
        if tying_weight < 0 or companion_weight < 0:
            raise ValueError(f"tying_weight and companion_weight must be >= 0, got {tying_weight} and "
                             f"{companion_weight}")
        ce = F.cross_entropy(main_logits, target)
        terms = {"ce": ce}
        total = ce
        if len(aux_logits) > 0:
            terms["aux_ce"] = sum(F.cross_entropy(z, target) for z in aux_logits)
            terms["distill"] = sum(self_distillation(z, main_logits, self.temperature) for z in aux_logits)
            total = total + self.alpha * terms["aux_ce"] + self.beta * terms["distill"]
        if tying_weight > 0 and len(aux_logits) > 0 and tying is None:
            raise ValueError("tying_weight > 0 needs tying= (e.g. model.weight_tying_penalty()), or "
                             "tying_weight=0")
        if tying is not None:
            terms["tying"] = tying
            if tying_weight > 0:
                total = total + tying_weight * tying
        if companions:
            values = companions.values() if isinstance(companions, Mapping) else companions
            terms["companion"] = sum(companion_loss(z, target, self.companion_threshold) for z in values)
            total = total + companion_weight * terms["companion"]
        if len(consistency) > 0:
            terms["jsd"] = jensen_shannon([main_logits, *consistency])
            total = total + self.jsd_weight * terms["jsd"]
        return total, terms
