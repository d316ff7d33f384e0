"""Losses of auxiliary training (Zhang et al. 2020) and deep supervision (Lee et al. 2015; Wang et al. 2015).

With main logits ``z0`` on the clean chunk and auxiliary logits ``zj`` on branch j's corrupted
copy of the same images (method.md, section 1)::

    L = CE(z0, y) + alpha * sum_j CE(zj, y)
      + beta * sum_j self_distillation(zj, z0, T)
      + gamma(t) * weight_tying_penalty(main_head, aux_heads)
      + w(t) * sum_m companion_loss(companion_m, y, threshold)

``gamma(t)`` is 0 in stage one and ``gamma`` in stage two; ``w(t)`` is the companion weight,
optionally decayed linearly over training (``decay_weight``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "self_distillation",
    "weight_tying_penalty",
    "tied_parameter_pairs",
    "companion_loss",
    "decay_weight",
    "AuxiliaryLoss",
]


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


def decay_weight(alpha0: float, epoch: float, total_epochs: float, factor: float = 1.0) -> float:
    """Linearly decayed weight ``alpha0 * factor * (1 - epoch / total_epochs)``, floored at 0.

    Wang et al. (2015) use ``alpha0 = 0.3, factor = 1``; DSN's schedule is ``factor = 0.1``.
    ``epoch`` may be fractional (e.g. ``epoch + step / steps_per_epoch``).
    """
    if total_epochs <= 0:
        raise ValueError(f"total_epochs must be > 0, got {total_epochs}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return alpha0 * factor * max(0.0, 1.0 - epoch / total_epochs)


class AuxiliaryLoss(nn.Module):
    """The composed objective; returns the total and each named, unweighted term for logging.

    Args:
        alpha: weight of the auxiliary heads' cross-entropy (authors: 0.05).
        beta: weight of the self-distillation term (authors: 0.05).
        temperature: distillation temperature T (authors: 1).
        gamma: weight of the weight-tying penalty in stage two (authors' code: 1; 0 in stage one).
        companion_weight: weight of the deep-supervision companions (Wang et al.: 0.3).
        companion_threshold: DSN hinge threshold on each companion's cross-entropy (0 = no hinge).
        companion_decay: decay the companion weight linearly to 0 over training (needs ``epoch`` and
            ``total_epochs`` in ``forward``).

    ``forward`` returns ``(total, terms)`` where ``terms`` holds ``"ce"`` and, when they apply,
    ``"aux_ce"`` and ``"distill"`` (summed over branches), ``"tying"`` (whenever heads are passed,
    added to the total only in stage two) and ``"companion"`` (summed over companions), each
    unweighted.
    """

    def __init__(
        self,
        alpha: float = 0.05,
        beta: float = 0.05,
        temperature: float = 1.0,
        gamma: float = 1.0,
        companion_weight: float = 0.3,
        companion_threshold: float = 0.0,
        companion_decay: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma),
                            ("companion_weight", companion_weight),
                            ("companion_threshold", companion_threshold)):  # fmt: skip
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.alpha, self.beta, self.temperature, self.gamma = alpha, beta, temperature, gamma
        self.companion_weight = companion_weight
        self.companion_threshold = companion_threshold
        self.companion_decay = companion_decay

    def forward(
        self,
        main_logits: torch.Tensor,
        aux_logits: Sequence[torch.Tensor],
        target: torch.Tensor,
        *,
        stage_two: bool,
        main_head: nn.Module | None = None,
        aux_heads: Iterable[nn.Module] | None = None,
        companions: Mapping[str, torch.Tensor] | Sequence[torch.Tensor] | None = None,
        epoch: float | None = None,
        total_epochs: float | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ce = F.cross_entropy(main_logits, target)
        terms = {"ce": ce}
        total = ce
        if len(aux_logits) > 0:
            terms["aux_ce"] = sum(F.cross_entropy(z, target) for z in aux_logits)
            terms["distill"] = sum(self_distillation(z, main_logits, self.temperature) for z in aux_logits)
            total = total + self.alpha * terms["aux_ce"] + self.beta * terms["distill"]
        if aux_heads is not None:
            aux_heads = list(aux_heads)
        if stage_two and self.gamma > 0 and len(aux_logits) > 0 and (main_head is None or not aux_heads):
            raise ValueError(
                "stage_two=True needs main_head= and aux_heads= for the weight-tying penalty "
                "(e.g. model.main_head, model.aux_heads), or gamma=0"
            )
        if main_head is not None and aux_heads:
            terms["tying"] = weight_tying_penalty(main_head, aux_heads)
            if stage_two:
                total = total + self.gamma * terms["tying"]
        if companions:
            values = companions.values() if isinstance(companions, Mapping) else companions
            terms["companion"] = sum(companion_loss(z, target, self.companion_threshold) for z in values)
            weight = self.companion_weight
            if self.companion_decay:
                if epoch is None or total_epochs is None:
                    raise ValueError(
                        "companion_decay=True needs epoch= and total_epochs= in forward(); "
                        "pass them or build AuxiliaryLoss(companion_decay=False)"
                    )
                weight = decay_weight(weight, epoch, total_epochs)
            total = total + weight * terms["companion"]
        return total, terms
