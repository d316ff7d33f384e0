"""auxtrain: train image classifiers that stay accurate when their inputs are corrupted.

The public names re-exported here are the stable API; see README.md for examples. They are
imported on first access (PEP 562), so ``import auxtrain`` and ``auxtrain --help`` load neither
torch nor the models; importing auxtrain changes no environment variable or thread setting.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_LAZY = {
    "AuxiliaryModel": "auxtrain.auxiliary",
    "create_model": "auxtrain.models",
    "list_models": "auxtrain.models",
    "load_model": "auxtrain.export",
}

__all__ = ["AuxiliaryModel", "create_model", "list_models", "load_model", "__version__"]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names come from __getattr__
    from auxtrain.auxiliary import AuxiliaryModel as AuxiliaryModel
    from auxtrain.export import load_model as load_model
    from auxtrain.models import create_model as create_model
    from auxtrain.models import list_models as list_models


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'auxtrain' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
