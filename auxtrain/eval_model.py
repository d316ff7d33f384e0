"""The model ``auxtrain eval`` measures: an exported ``--checkpoint``, or ``--model NAME --weights PATH``.

``--model`` is any registered name (auxtrain's, ``tv_*``, ``timm/*``) and ``--weights`` a plain
state_dict (torchvision, timm, an auxtrain export, wrapped or not), loaded strictly; the class
count is read from the classifier's weight in the file. The model is fed images in [0, 1] and
normalised with ``--mean/--std`` when given, else with the model's own statistics: timm's
``pretrained_cfg``, torchvision's default weights' transforms, or an auxtrain file's metadata.
Where the numbers came from is part of the model's ``meta`` (and of the report's title).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from auxtrain.export import NormalizedModel, load_model
from auxtrain.init_weights import load_weights, parse_model_kwargs, read_weights, sha256_of

if TYPE_CHECKING:
    from auxtrain.eval_config import EvalConfig

__all__ = ["load_eval_model", "parse_stats", "model_normalization", "describe"]


def parse_stats(text: str | None, flag: str) -> list[float] | None:
    """``"0.485,0.456,0.406"`` -> three floats (one per channel); None stays None."""
    if text is None:
        return None
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if len(values) != 3 or (flag == "--std" and min(values) <= 0):
        raise ValueError(f"{flag} {text!r}: pass three comma-separated numbers (one per RGB channel, 0..1 "
                         f"scale{', all > 0' if flag == '--std' else ''}), e.g. {flag} "
                         f"{'0.229,0.224,0.225' if flag == '--std' else '0.485,0.456,0.406'}")
    return values


def model_normalization(name: str, model: nn.Module) -> tuple[list[float], list[float], str] | None:
    """(mean, std, where from) from the model's own config: timm's pretrained_cfg, torchvision's weights."""
    cfg = getattr(model, "pretrained_cfg", None)
    if name.startswith("timm/") and isinstance(cfg, dict) and cfg.get("mean") and cfg.get("std"):
        tag = cfg.get("tag") or cfg.get("architecture") or name
        where = f"timm pretrained_cfg of {name.removeprefix('timm/')} ({tag})"
        return list(cfg["mean"]), list(cfg["std"]), where
    if name.startswith("tv_"):
        from auxtrain.models.pretrained import torchvision_weights

        weights = torchvision_weights(name[3:])
        transform = weights.transforms()
        return list(transform.mean), list(transform.std), f"torchvision {weights} transforms"
    return None


def _num_classes(model: nn.Module, state: dict[str, Any]) -> int | None:
    """Rows of the classifier's weight in ``state`` (None if the file does not hold it)."""
    classifier = model.get_classifier()
    for name, module in model.named_modules():
        if module is classifier:
            weight = state.get(f"{name}.weight")
            return int(weight.shape[0]) if weight is not None and weight.dim() >= 1 else None
    return None


def load_eval_model(cfg: EvalConfig, device: torch.device) -> NormalizedModel:
    """The model of ``cfg`` in eval mode on ``device``, taking images in [0, 1] (or uint8)."""
    if cfg.checkpoint:
        return load_model(cfg.checkpoint, device=device)
    from auxtrain.models import create_model

    state, file_meta = read_weights(cfg.weights, flag="--weights")
    kwargs = {**(file_meta.get("model_kwargs") or {}), **parse_model_kwargs(cfg.model_kwargs)}
    model = create_model(cfg.model, 1000, **kwargs)
    classes = _num_classes(model, state)
    if classes is not None and classes != model.num_classes:
        model = create_model(cfg.model, classes, **kwargs)
    load_weights(model, state, source=str(cfg.weights), flag="--weights")
    mean, std = parse_stats(cfg.mean, "--mean"), parse_stats(cfg.std, "--std")
    if (mean is None) != (std is None):
        raise ValueError("pass both --mean and --std (the per-channel statistics the model was trained "
                         "with), or neither to use the model's own")
    if mean is not None:
        source = "--mean/--std"
    elif file_meta.get("mean") and file_meta.get("std"):
        mean, std, source = file_meta["mean"], file_meta["std"], f"the metadata of {cfg.weights}"
    else:
        own = model_normalization(cfg.model, model)
        if own is None:
            raise ValueError(f"--model {cfg.model} has no input normalisation of its own (no timm "
                             "pretrained_cfg or torchvision weights); pass --mean and --std, the training "
                             "set's per-channel statistics (e.g. CIFAR-10: --mean 0.4914,0.4822,0.4465 --std "
                             "0.2470,0.2435,0.2616)")
        mean, std, source = own
    meta = {"model": cfg.model, "num_classes": model.num_classes, "mean": mean, "std": std,
            "normalization": source, "weights": str(cfg.weights), "weights_sha256": sha256_of(cfg.weights),
            "model_kwargs": kwargs}
    return NormalizedModel(model, mean, std, meta=meta).to(device).eval()


def describe(model: NormalizedModel) -> str:
    """The report's account of the model and its input normalisation (``--model`` runs)."""
    meta = model.meta
    if "normalization" not in meta:
        return ""
    stats = ", ".join(f"{m:.4g}/{s:.4g}" for m, s in zip(meta["mean"], meta["std"], strict=True))
    return (f"{meta['model']} with {meta['weights']}; input normalisation mean/std {stats} "
            f"({meta['normalization']})")
