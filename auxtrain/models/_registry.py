"""Model registry: ``register_model`` decorator, ``list_models`` and the ``create_model`` factory.

Modelled on timm's registry: every architecture file ends with small builder functions decorated
with ``@register_model``; ``create_model`` looks a name up, drops keyword options whose value is
``None`` (so CLI flags left unset keep the model's own defaults) and calls the builder.

Families whose names are only known by scanning another library (the ``tv_*`` torchvision
adapters, the ``timm/*`` models) register a function with ``register_lazily`` instead: it runs
once, the first time the
registry is asked for a name it does not hold or for the list of names, so importing the models
neither imports nor scans torchvision or timm.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
from collections.abc import Callable

import torch.nn as nn

__all__ = ["register_model", "register_lazily", "list_models", "create_model", "is_model"]

_MODEL_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}
_PENDING: list[Callable[[], None]] = []  # register_lazily functions not run yet


def register_lazily(register: Callable[[], None]) -> None:
    """Run ``register()`` (which calls ``register_model``) the first time all the names are needed."""
    _PENDING.append(register)


def _entrypoints(name: str | None = None) -> dict[str, Callable[..., nn.Module]]:
    """The registry; runs the pending lazy registrations unless ``name`` is registered already."""
    while _PENDING and (name is None or name not in _MODEL_ENTRYPOINTS):
        _PENDING.pop(0)()
    return _MODEL_ENTRYPOINTS


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None):
    """Register a builder ``fn(num_classes, **kw) -> nn.Module`` under ``name`` (default: its ``__name__``).

    Usable as ``@register_model`` or ``@register_model(name="tv_resnet18")``. Registering the same
    name twice raises ``ValueError``.
    """

    def _register(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or builder.__name__
        if key in _MODEL_ENTRYPOINTS:
            raise ValueError(f"model name {key!r} is already registered; choose another name")
        _MODEL_ENTRYPOINTS[key] = builder
        return builder

    if fn is not None:
        return _register(fn)
    return _register


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered model names, optionally filtered by a wildcard ``pattern`` (e.g. ``"resnet*"``)."""
    names = sorted(_entrypoints())
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def _builder(name: str) -> Callable[..., nn.Module] | None:
    """The builder of ``name``; ``timm/<arch>.<tag>`` (a pretrained tag): ``timm/<arch>``'s, with the tag."""
    entrypoints = _entrypoints(name)
    if name in entrypoints:
        return entrypoints[name]
    base, dot, tag = name.partition(".")
    if base.startswith("timm/") and dot and tag and base in _entrypoints(base):
        return functools.partial(entrypoints[base], tag=tag)
    return None


def is_model(name: str) -> bool:
    """True if ``name`` is a registered model (or ``timm/<arch>.<tag>`` of a registered timm model)."""
    return _builder(name) is not None


def create_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with a ``num_classes``-way classifier.

    Keyword options whose value is ``None`` are dropped, so the builder's default applies. Unknown
    names raise ``ValueError`` naming the closest registered names.

    Example::

        model = create_model("resnet18", num_classes=100)
    """
    builder = _builder(name)
    if builder is None:
        close = difflib.get_close_matches(name, _MODEL_ENTRYPOINTS, n=3)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        own = [n for n in list_models() if "/" not in n]  # timm/* names: too many to print
        more = len(_MODEL_ENTRYPOINTS) - len(own)
        extra = f", and {more} timm/* names (`auxtrain list-models 'timm/*'`)" if more else \
            " (pip install 'auxtrain[timm]' adds every timm model as timm/<name>)"
        raise ValueError(f"unknown model name {name!r}; {hint}valid names: {', '.join(own)}{extra}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return builder(num_classes=num_classes, **kwargs)
