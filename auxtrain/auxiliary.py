"""AuxiliaryModel: a backbone trained with auxiliary heads on corrupted views (Zhang et al. 2020).

The wrapped model's batch norms become :class:`~auxtrain.nn.SelectiveBatchNorm2d` with one domain
per view (clean first), so the stacked batch ``[clean; view_1; ...; view_K]`` goes through the
feature extractor in ONE pass while each view is normalised with its own statistics (or, given
the list of K+1 chunks, in K+1 passes routed to their domains: same numbers, faster on CPUs). The clean
chunk feeds the model's own head (the main head); chunk j feeds auxiliary head j. Optional
deep-supervision companions (Lee et al. 2015; Wang et al. 2015) classify the clean chunk's
output of named stages. :meth:`AuxiliaryModel.strip` exports the plain model for inference.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn as nn

from auxtrain.losses import tied_parameter_pairs, weight_tying_penalty
from auxtrain.models._base import ClassifierHead
from auxtrain.models._head import ForwardHead, probe_features
from auxtrain.nn import (
    InputNormalization,
    convert_selective_bn,
    has_selective_bn,
    revert_selective_bn,
    route_domains,
)

__all__ = ["AuxiliaryModel", "AuxiliaryOutput", "AttentionHead", "CompanionHead"]

HEAD_TYPES = ("copy", "attention")


class AttentionHead(nn.Module):
    """The authors' auxiliary head: sigmoid attention gate, 1x1-3x3-1x1 bottleneck, then a classifier head.

    ``x * gate(x)`` with ``gate`` = conv3x3-BN-ReLU-conv3x3-BN-sigmoid; a bottleneck (C -> C/2 -> C/2
    -> C, BN-ReLU after each convolution, the 3x3 padded so small maps keep their size); then
    ``head`` (pooling, any hidden layers, the final linear), which :class:`AuxiliaryModel` makes a
    deep copy of the main head so that the final linear layers can be tied.

    Args:
        channels: channels of the unpooled feature map.
        head: the classifier head applied to the bottleneck's output map.
    """

    def __init__(self, channels: int, head: nn.Module) -> None:
        super().__init__()
        mid = max(channels // 2, 1)
        self.gate = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.Sigmoid(),
        )
        self.bottleneck = nn.Sequential(
            nn.Conv2d(channels, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bottleneck(x * self.gate(x)))

    def get_classifier(self) -> nn.Linear:
        return self.head.get_classifier()


class CompanionHead(nn.Module):
    """Deep-supervision companion classifier: conv3x3-BN-ReLU, global average pooling, linear.

    Args:
        in_channels: channels of the stage output it reads.
        num_classes: classes to predict.
        hidden_channels: width of its convolution (default: ``in_channels``).
    """

    def __init__(self, in_channels: int, num_classes: int, hidden_channels: int | None = None) -> None:
        super().__init__()
        hidden = hidden_channels or in_channels
        self.conv = nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(hidden)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(x, 1))


class AuxiliaryOutput(NamedTuple):
    """What :class:`AuxiliaryModel` returns in training: always these three fields.

    ``main``: main-head logits on the clean chunk (B rows); ``aux``: one logits tensor per
    auxiliary head on its corrupted chunk (empty for K = 0); ``companions``: deep-supervision
    logits on the clean chunk by stage name (empty when there are none).
    """

    main: torch.Tensor
    aux: list[torch.Tensor]
    companions: dict[str, torch.Tensor]


def _companion_key(stage: str) -> str:
    return stage.replace(".", "__")  # ModuleDict keys cannot contain dots


class AuxiliaryModel(nn.Module):
    """Backbone + main head + K auxiliary heads (+ optional companions), trained on stacked views.

    Args:
        model: any model with timm's interface (``forward_features``, ``forward_head``,
            ``get_classifier``, ``num_classes``): an ``auxtrain.models`` backbone, a ``tv_*``
            adapter, a timm model. It is wrapped, not copied: its batch norms are converted in
            place. Its head is its ``head`` module for auxtrain's backbones, else the top-level
            layers only ``forward_head`` runs (found by one dry run, see
            :func:`auxtrain.models._head.probe_features`). A model without BatchNorm2d trains
            without selective BN (a warning says so; ``selective_bn`` is then False).
        num_branches: K, the number of corrupted views per image (0 = ordinary training, same code path).
        head: ``"copy"`` (each auxiliary head is a deep copy of the main head) or ``"attention"``
            (the authors' attention + bottleneck head on the unpooled map, see :class:`AttentionHead`).
        running_stats: ``"clean"`` (running statistics from the clean chunk only, the authors'
            behaviour) or ``"per_domain"``; passed to ``convert_selective_bn``.
        companions: stage names (from ``model.stage_names``, which timm models do not have) that get
            a deep-supervision companion.
        companion_channels: width of each companion's convolution (default: the stage's channels).
        selective_bn: ``False`` keeps plain BatchNorm2d, so the stacked views share batch and running
            statistics (the "without selective BN" ablation of the paper; not the method).
        mean, std: the dataset's per-channel statistics (0..1 scale). Given, the model takes images
            as uint8 or float in [0, 1] and normalises them itself (:class:`InputNormalization`), as
            the exported model does; omitted, it takes already normalised float input.

    Training mode: ``forward(x)`` with ``x`` the stacked batch ``[clean; view_1; ...; view_K]`` of
    ``(K + 1) * B`` images, or with the list ``[clean, view_1, ..., view_K]`` (one pass per
    chunk), returns an :class:`AuxiliaryOutput` ``(main, aux, companions)``.
    Eval mode: ``forward(x)`` takes an ordinary clean batch and returns the main logits (plain BN
    behaviour with the clean running statistics). :meth:`forward_branches` runs the branches in
    any mode.

    Example::

        model = AuxiliaryModel(create_model("resnet18", 100), num_branches=2)
        out = model(torch.cat([clean, noisy, blurred]))   # out.main, out.aux, out.companions
        plain = model.strip()  # loads into create_model("resnet18", 100)
    """

    def __init__(
        self,
        model: nn.Module,
        num_branches: int,
        head: str = "copy",
        running_stats: str = "clean",
        companions: Sequence[str] | None = None,
        companion_channels: int | None = None,
        selective_bn: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(num_branches, bool) or not isinstance(num_branches, int) or num_branches < 0:
            raise ValueError(f"num_branches must be an int >= 0, got {num_branches!r}")
        if head not in HEAD_TYPES:
            raise ValueError(f"head must be one of {HEAD_TYPES}, got {head!r}")
        for attr in ("forward_features", "forward_head", "get_classifier", "num_classes"):
            if not hasattr(model, attr):
                raise TypeError(
                    f"model {type(model).__name__} has no {attr!r}; wrap a model with timm's interface "
                    "(forward_features, forward_head, get_classifier, num_classes): a timm model, or one "
                    "from auxtrain.models.create_model (tv_* for torchvision models)"
                )
        if isinstance(companions, str):
            companions = [companions]
        companions = tuple(companions or ())
        stage_names = tuple(getattr(model, "stage_names", ()))
        unknown = [s for s in companions if s not in stage_names]
        if unknown:
            valid = stage_names or "none (it has no stage_names; companions need an auxtrain backbone)"
            raise ValueError(f"companions {unknown} are not stages of {type(model).__name__}; valid: {valid}")
        if companion_channels is not None and companion_channels < 1:
            raise ValueError(f"companion_channels must be a positive int or None, got {companion_channels!r}")

        if (mean is None) != (std is None):
            raise ValueError("pass both mean= and std= (the dataset's per-channel statistics) or neither")
        self.num_branches = num_branches
        self.head_type = head
        self.normalize = InputNormalization(mean, std) if mean is not None else nn.Identity()
        self.companion_stages = companions
        # auxtrain's backbones keep their head in one module; other models: the layers forward_head runs.
        own_head = isinstance(getattr(model, "head", None), ClassifierHead)
        names, feature_shape = ((), None) if own_head else probe_features(model)
        self._head_names: tuple[str, ...] | None = None if own_head else names
        self.model = convert_selective_bn(model, num_branches + 1, running_stats=running_stats) \
            if selective_bn else model
        # No BatchNorm2d (a ViT, a ConvNeXt): nothing to route; heads, distillation and tying still apply.
        self.selective_bn = selective_bn and has_selective_bn(self.model)
        ref = next(self.model.parameters())
        main_head = self.main_head
        if head == "attention" and feature_shape is not None and len(feature_shape) != 4:
            raise ValueError(f"head='attention' needs a (N, C, H, W) feature map; {type(model).__name__}."
                             f"forward_features gives shape {tuple(feature_shape)}: use head='copy'")
        feature_channels = self.model.num_features if feature_shape is None else feature_shape[1]
        aux_heads = []
        for _ in range(num_branches):
            copied = copy.deepcopy(main_head)
            aux_heads.append(copied if head == "copy" else AttentionHead(feature_channels, copied))
        self.aux_heads = nn.ModuleList(aux_heads).to(device=ref.device)
        channels = dict(zip(stage_names, getattr(model, "stage_channels", ()), strict=False))
        self.companions = nn.ModuleDict(
            {
                _companion_key(s): CompanionHead(channels[s], self.model.num_classes, companion_channels)
                for s in companions
            }
        ).to(device=ref.device)
        self.normalize.to(device=ref.device)
        for p in list(self.aux_heads.parameters()) + list(self.companions.parameters()):
            p.grad = None

    @property
    def main_head(self) -> nn.Module:
        """The wrapped model's own head (pooling + final linear, its own layers): kept by :meth:`strip`."""
        if self._head_names is None:
            return self.model.head
        return ForwardHead(self.model, self._head_names)

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(getattr(self.model, "stage_names", ()))

    def get_classifier(self) -> nn.Linear:
        """The main head's final linear layer."""
        return self.model.get_classifier()

    def tied_parameters(self) -> list[tuple[nn.Parameter, nn.Parameter]]:
        """(main, auxiliary) parameter pairs of the weight-tying penalty, over all auxiliary heads."""
        return [pair for aux in self.aux_heads for pair in tied_parameter_pairs(self.main_head, aux)]

    def weight_tying_penalty(self) -> torch.Tensor | None:
        """The stage-two penalty over all auxiliary heads (None without auxiliary heads)."""
        if not self.num_branches:
            return None
        return weight_tying_penalty(self.main_head, self.aux_heads)

    def _features(self, x: torch.Tensor, with_stages: bool):
        x = self.normalize(x)
        if with_stages and self.companion_stages:
            return self.model.forward_stages(x, self.companion_stages)
        return self.model.forward_features(x), {}

    def _companion_logits(self, stages: dict[str, torch.Tensor], rows: int | None) -> dict[str, torch.Tensor]:
        heads = self.companions
        return {s: heads[_companion_key(s)](out if rows is None else out[:rows]) for s, out in stages.items()}

    def forward_branches(self, x: torch.Tensor | Sequence[torch.Tensor]) -> AuxiliaryOutput:
        """All heads' logits, in any mode, from the stacked batch or from the K+1 chunks one by one.

        ``x`` is either the stacked tensor ``[clean; view_1; ...; view_K]`` (one pass: fast on GPUs)
        or the list ``[clean, view_1, ..., view_K]`` (K+1 passes of B images, each routed to its
        own domain: faster on CPUs, whose caches hold a B-image pass better). With selective BN
        both give the same outputs, gradients and running statistics.
        """
        if isinstance(x, torch.Tensor):
            return self._stacked_pass(x)
        return self._separate_passes(list(x))

    def _stacked_pass(self, x: torch.Tensor) -> AuxiliaryOutput:
        domains = self.num_branches + 1
        if x.shape[0] % domains:
            raise ValueError(
                f"batch of {x.shape[0]} images cannot be split into num_branches + 1 = {domains} equal "
                f"chunks; stack the clean batch and its {self.num_branches} corrupted views (same size each)"
            )
        rows = x.shape[0] // domains
        routing = route_domains(self.model, sizes=[rows] * domains) if self.selective_bn \
            else contextlib.nullcontext()
        with routing:
            features, stages = self._features(x, with_stages=True)
        chunks = features.split(rows)
        main_logits = self.model.forward_head(chunks[0])
        aux_logits = [aux(chunk) for aux, chunk in zip(self.aux_heads, chunks[1:], strict=True)]
        return AuxiliaryOutput(main_logits, aux_logits, self._companion_logits(stages, rows))

    def _separate_passes(self, chunks: list[torch.Tensor]) -> AuxiliaryOutput:
        domains = self.num_branches + 1
        if len(chunks) != domains:
            raise ValueError(f"got {len(chunks)} chunks for num_branches + 1 = {domains} domains; pass the "
                             f"clean batch and its {self.num_branches} corrupted views")
        if domains > 1 and not self.selective_bn:
            raise ValueError("separate passes need selective BN: without it the views share one set of batch "
                             "statistics, which only the stacked pass computes; pass the stacked tensor")
        # The views first, the clean chunk last: the clean pass (plain BatchNorm2d, which saves the
        # running statistics for its backward) must come after the views' passes, whose operator
        # declares those buffers as mutated and so bumps their version counters.
        features: dict[int, torch.Tensor] = {}
        stages: dict[str, torch.Tensor] = {}
        for d in [*range(1, domains), 0]:
            # Domain d alone: the empty chunks before it make the route's sizes [0, ..., 0, B].
            routing = route_domains(self.model, sizes=[0] * d + [chunks[d].shape[0]]) if self.selective_bn \
                else contextlib.nullcontext()
            with routing:
                features[d], found = self._features(chunks[d], with_stages=d == 0)
            stages = found if d == 0 else stages
        main_logits = self.model.forward_head(features[0])
        aux_logits = [aux(features[d]) for d, aux in enumerate(self.aux_heads, start=1)]
        return AuxiliaryOutput(main_logits, aux_logits, self._companion_logits(stages, None))

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> AuxiliaryOutput | torch.Tensor:
        """Training: :meth:`forward_branches` on the stacked views (a tensor) or the K+1 chunks (a list).
        Eval: main logits of a clean batch (a list still gives :meth:`forward_branches`)."""
        if self.training or not isinstance(x, torch.Tensor):
            return self.forward_branches(x)
        features, _ = self._features(x, with_stages=False)
        return self.model.forward_head(features)

    def strip(self) -> nn.Module:
        """A new plain model: deep copy, original batch norms with the clean statistics, no auxiliary parts.

        It is of the wrapped model's class; its ``state_dict`` loads strictly into a fresh one
        (``create_model(name, num_classes)``, ``timm.create_model(...)``) and its eval outputs equal
        this model's main outputs.
        """
        return revert_selective_bn(copy.deepcopy(self.model))

    def extra_repr(self) -> str:
        stages = self.companion_stages
        return (f"num_branches={self.num_branches}, head={self.head_type!r}, companions={stages}, "
                f"selective_bn={self.selective_bn}")
