"""What ``--resume`` may change and what it reads back: a saved run's options as it trained them.

Kept apart from :mod:`auxtrain.train_config` (which declares the options) because it is about
runs saved by earlier versions: the options that may differ on resume, the values of options newer
than a run, and the run's own config.yaml as the base layer of ``--resume --out DIR``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from auxtrain.train_config import TrainConfig

__all__ = ["RESUMABLE_CHANGES", "with_newer_options", "saved_run_options"]


def with_newer_options(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved run's options plus the values, for options newer than the run, that it trained with.

    --resume continues such a run with them. tying_scale and view_order arrived in the same version,
    so a run without tying_scale also predates the corrupt-then-crop order; a run with tying_scale
    but without view_order was saved in between and trained corrupt_then_crop.
    """
    if "tying_scale" not in saved:
        newer = {"tying_scale": "none", "view_order": "crop_then_corrupt"}
    else:
        newer = {"view_order": "corrupt_then_crop"}
    return {**newer, **saved}


# Fields that may change between a run and its --resume (they do not change what is trained). Not
# epochs: the LR milestones, the cosine and the stage-two start are computed from it.
RESUMABLE_CHANGES = {"device", "workers", "data_root", "download", "eval", "eval_size",
                     "eval_corruptions", "eval_severities", "eval_seed", "eval_root", "progress", "out",
                     "resume", "overwrite", "compile", "log_interval", "logger", "channels_last",
                     "domain_passes", "views_ahead", "bn_adapt", "bn_prior"}


def saved_run_options(out: str | os.PathLike) -> dict[str, Any]:
    """The options the run in ``out`` was started with, from its config.yaml; ``{}`` if it has none.

    This is the base layer of ``--resume --out DIR``, under a config file and the flags. ``resume``
    and ``overwrite`` are left out (they say what to do with the run, not what it is), and so are
    keys that are no longer TrainConfig fields; options newer than the run get the value it trained
    with (:func:`with_newer_options`).
    """
    from auxtrain.run_dir import RunDir

    if not (Path(out) / RunDir.CONFIG).is_file():
        return {}
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"resume", "overwrite"}
    saved = with_newer_options(RunDir(out, resume=True).read_config())
    return {k: v for k, v in saved.items() if k in names}
