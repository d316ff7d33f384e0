"""Training checkpoints: one dict that can resume everything, written atomically, read with checks.

A checkpoint holds the model and optimizer state, the epoch and step to continue from, the
random-number-generator states and the resolved config. It is written to ``FILE.tmp`` and moved
over ``FILE`` with ``os.replace``, so a crash while saving leaves the previous checkpoint intact.
Loading uses ``torch.load(weights_only=True)`` (no pickled code runs) and turns every failure
into a CheckpointError (a ValueError) that names the file.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from auxtrain.errors import CheckpointError
from auxtrain.run_dir import atomic_write_bytes

__all__ = ["CHECKPOINT_FORMAT", "REQUIRED_KEYS", "save_checkpoint", "load_checkpoint", "restoring"]

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

    Raises CheckpointError (a ValueError) naming ``path`` if the file is missing, truncated,
    corrupt, of another format, or lacks a required entry or has one of the wrong type.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; start the run without --resume")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ... on bad files
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {exc}); nothing was "
            "overwritten. Delete the run directory or start again with --overwrite"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not an auxtrain "
                              "checkpoint dict")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is not an auxtrain training checkpoint (missing {missing})")
    if state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {state['format']!r}; "
            f"this auxtrain reads format {CHECKPOINT_FORMAT}"
        )
    problems = [f"{key!r} is {_kind(state[key])}, not {what}" for key, (types, what) in _ENTRY_TYPES.items()
                if not isinstance(state[key], types) or isinstance(state[key], bool)]
    torch_rng = state["rng"].get("torch") if isinstance(state["rng"], dict) else None
    good_rng = isinstance(torch_rng, torch.Tensor) and torch_rng.dtype == torch.uint8
    if isinstance(state["rng"], dict) and not good_rng:
        problems.append("'rng' lacks the torch generator state ('torch': a uint8 tensor)")
    if problems:
        raise CheckpointError(f"checkpoint {path} is damaged: {'; '.join(problems)}. Nothing was "
                              "overwritten; start again with --overwrite (or restore the file)")
    return state


# The type each entry of a checkpoint must have, and how a message names it.
_ENTRY_TYPES = {"epoch": (int, "an integer"), "step": (int, "an integer"), "model": (dict, "a state dict"),
                "optimizer": (dict, "an optimizer state dict"), "config": (dict, "a mapping of options"),
                "rng": (dict, "a mapping of generator states")}


def _kind(value: Any) -> str:
    return f"a {type(value).__name__}" if value is not None else "None"


@contextlib.contextmanager
def restoring(path: str | os.PathLike) -> Iterator[None]:
    """Turn a failure to load checkpoint ``path`` into the model and optimizer into a CheckpointError.

    ``load_state_dict`` raises RuntimeError, KeyError or ValueError when the saved weights do not
    fit the model (missing or unexpected keys, other shapes); the message names the file.
    """
    try:
        yield
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 300 else detail[:300] + " ..."
        raise CheckpointError(
            f"checkpoint {path} does not fit this run's model or optimizer ({type(exc).__name__}: {detail}); "
            "nothing was overwritten. Resume with the auxtrain version and options that wrote it, or start "
            "again with --overwrite"
        ) from None
