"""The exported model file: a plain backbone state dict plus the metadata needed to rebuild and use it.

``save_model`` writes (atomically) a dict that ``torch.load(path, weights_only=True)`` can read::

    {"format": "auxtrain.model", "format_version": 1,
     "state_dict": {...},                      # the plain backbone (no auxiliary heads)
     "meta": {"model": "resnet18", "num_classes": 100, "mean": [...], "std": [...],
              ...}}                            # plus dataset, corruptions, seed, metrics, versions

``load_model`` rebuilds the backbone with :func:`auxtrain.models.create_model` and wraps it in
:class:`NormalizedModel`, which takes uint8 or float [0, 1] images (as the training model does) and
normalises them itself, so callers (evaluation, users) never need to know the training statistics.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from auxtrain.nn import InputNormalization

FORMAT = "auxtrain.model"
FORMAT_VERSION = 1
_REQUIRED_META = ("model", "num_classes", "mean", "std")


class NormalizedModel(nn.Module):
    """``model`` preceded by :class:`~auxtrain.nn.InputNormalization`: takes uint8 or float [0, 1] images.

    The same input contract as the training model. The plain backbone is ``.model``; ``.meta``
    holds the metadata of the exported file.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float],
                 meta: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.normalize = InputNormalization(mean, std)  # non-persistent: the keys stay "model.*"
        self.model = model
        self.meta = dict(meta or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(x))


def _plain(value: Any, where: str) -> Any:
    """``value`` made of the types torch.load(weights_only=True) accepts (tuples become lists)."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalars
        return value.item()
    raise TypeError(f"meta value {where} has type {type(value).__name__}, which a weights_only file cannot "
                    f"hold; pass numbers, strings, lists or dicts")


def save_model(path: str | os.PathLike, model: nn.Module, *, model_name: str, num_classes: int,
               mean: Sequence[float], std: Sequence[float], meta: Mapping[str, Any] | None = None) -> None:
    """Write ``model``'s weights and metadata to ``path`` atomically (tmp file + ``os.replace``).

    ``model`` is the plain backbone (an exported :class:`NormalizedModel` is unwrapped). ``meta``
    adds free-form entries, e.g. dataset, image_size, corruptions, seed, metrics.
    """
    if isinstance(model, NormalizedModel):
        model = model.model
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    from auxtrain import __version__

    info = {"model": str(model_name), "num_classes": int(num_classes),
            "mean": [float(m) for m in mean], "std": [float(s) for s in std],
            "auxtrain_version": __version__, "torch_version": str(torch.__version__)}
    info.update(_plain(dict(meta or {}), "meta"))
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "state_dict": state, "meta": info},
               buffer)
    from auxtrain.run_dir import atomic_write_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """The validated contents of an exported model file (``format``, ``state_dict``, ``meta``)."""
    path = Path(path)
    fix = "pass the model_plain.pt written by `auxtrain fit` (or by auxtrain.export.save_model)"
    if not path.is_file():
        raise ValueError(f"model file {path} does not exist; {fix}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, not a torch file, unsafe pickle, ...
        raise ValueError(f"{path} is not a readable model file ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); it may be truncated or "
                         f"corrupt; {fix}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        hint = ""
        if isinstance(data, dict) and "optimizer" in data:
            hint = " (it looks like a training checkpoint: use the run's model_plain.pt instead)"
        elif isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
            hint = " (it looks like a bare state dict without metadata)"
        raise ValueError(f"{path} is not an auxtrain model file{hint}; {fix}")
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {data.get('format_version')!r}, this auxtrain reads "
                         f"version {FORMAT_VERSION}; upgrade auxtrain or export the model again")
    meta = data.get("meta")
    missing = [k for k in _REQUIRED_META if not isinstance(meta, dict) or k not in meta]
    if missing or not isinstance(data.get("state_dict"), dict):
        raise ValueError(f"{path} lacks {missing or ['state_dict']}; the file is damaged; {fix}")
    return data


def load_model(path: str | os.PathLike, device: str | torch.device | None = None) -> NormalizedModel:
    """Rebuild an exported model: a :class:`NormalizedModel` in eval mode on ``device`` (default cpu).

    The returned module takes images (N, 3, H, W), uint8 or float in [0, 1]; the backbone is ``.model`` and
    the file's metadata ``.meta``.
    """
    from auxtrain.models import create_model

    data = read_model_file(path)
    meta = data["meta"]
    kwargs = dict(meta.get("model_kwargs") or {})
    try:
        model = create_model(meta["model"], num_classes=int(meta["num_classes"]), **kwargs)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path}: cannot build model {meta['model']!r} ({exc}); the file was written by a "
                         f"different auxtrain version, run `auxtrain list-models`") from None
    try:
        model.load_state_dict(data["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: the weights do not fit model {meta['model']!r}: "
                         f"{str(exc).splitlines()[0][:300]}; export the model again") from None
    wrapped = NormalizedModel(model, meta["mean"], meta["std"], meta=meta)
    return wrapped.to(torch.device(device) if device is not None else "cpu").eval()
