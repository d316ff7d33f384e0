"""Training checkpoints: one dict that can resume everything, written atomically, read with checks.

A checkpoint holds the model and optimizer state, the epoch and step to continue from, the
random-number-generator states and the resolved config. It is written to ``FILE.tmp`` and moved
over ``FILE`` with ``os.replace``, so a crash while saving leaves the previous checkpoint intact.
Loading uses ``torch.load(weights_only=True)`` (no pickled code runs) and turns every failure
into a ValueError that names the file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from auxtrain.run_dir import atomic_write_bytes

__all__ = ["CHECKPOINT_FORMAT", "REQUIRED_KEYS", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = 1
REQUIRED_KEYS = ("format", "epoch", "step", "model", "optimizer", "config", "rng")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus the format version) to ``path`` atomically; returns the path."""
    path = Path(path)
    state = {"format": CHECKPOINT_FORMAT, **state}
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint state is missing {missing}; it needs the keys {list(REQUIRED_KEYS)}")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_checkpoint(path: str | os.PathLike,
                    map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint written by ``save_checkpoint``.

    Raises ValueError naming ``path`` if the file is missing, truncated, corrupt, of another
    format, or lacks a required entry.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist; start the run without --resume")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ... on bad files
        raise ValueError(
            f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {exc}); nothing was "
            "overwritten. Delete the run directory or start again with --overwrite"
        ) from None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, not an auxtrain checkpoint dict")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint {path} is not an auxtrain training checkpoint (missing {missing})")
    if state["format"] != CHECKPOINT_FORMAT:
        raise ValueError(
            f"checkpoint {path} has format {state['format']!r}; "
            f"this auxtrain reads format {CHECKPOINT_FORMAT}"
        )
    return state
