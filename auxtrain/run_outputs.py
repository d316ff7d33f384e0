"""What a finished run leaves behind: the exported plain model and the robustness report.

:func:`export_model` writes ``model_plain.pt`` (and ``model_best.pt``) with the run's metadata;
:func:`robustness_report` evaluates the exported model on ``--eval-root`` or on corrupted copies of
the test (or validation) images, cached in the run, and writes the report files into the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from auxtrain.train_config import TrainConfig

__all__ = ["export_model", "robustness_report"]


def export_model(cfg: TrainConfig, spec: Any, branches, path: Path, model: torch.nn.Module, acc: float,
                 extra: dict[str, Any] | None = None) -> None:
    """Write the plain ``model`` to ``path`` with the run's metadata (model_plain.pt, model_best.pt)."""
    from auxtrain.data.views import seen_corruptions
    from auxtrain.export import save_model
    from auxtrain.init_weights import parse_model_kwargs

    meta = {"dataset": cfg.dataset, "image_size": spec.image_size, "mode": cfg.mode, "seed": cfg.seed,
            "corruptions": cfg.corruptions if branches else "none",
            "seen_corruptions": seen_corruptions(branches),  # the test corruptions trained on
            "epochs": cfg.epochs, "test_acc": acc, "test_acc_split": "validation" if cfg.val_size else "test",
            "model_kwargs": parse_model_kwargs(cfg.model_kwargs), **(extra or {})}
    save_model(path, model, model_name=cfg.model, num_classes=spec.num_classes, mean=spec.mean, std=spec.std,
               meta=meta)


def _method(cfg: TrainConfig) -> str:
    """How the run trained, in words, for the report title."""
    if cfg.mode == "augmix":
        method = "AugMix with Jensen-Shannon consistency"
    elif cfg.corruptions.strip().lower() != "none":  # any branch, corruptions or training views
        method = f"{cfg.mode}, corruptions: {cfg.corruptions}"
    else:
        method = "standard training"
    return method + ("; validation split" if cfg.val_size else "")


def robustness_report(cfg: TrainConfig, model_path: Path, run_path: Path, test_ds, device: torch.device,
                      branches):
    """Corruption errors of the model at ``model_path`` on ``eval_root`` or a -C set generated from
    ``test_ds``; the report files go into ``run_path``. Returns the error table."""
    from auxtrain.data import seeded_subset
    from auxtrain.data.views import seen_corruptions
    from auxtrain.evaluation import evaluate
    from auxtrain.export import load_model

    generate_from = None
    if cfg.eval_root is None:  # corrupted copies of the test (or validation) images, cached in the run
        ds = seeded_subset(test_ds, cfg.eval_size, cfg.eval_seed)
        images, labels = zip(*(ds[i] for i in range(len(ds))), strict=True)
        generate_from = (torch.stack(images), torch.as_tensor(labels))
    result = evaluate(load_model(model_path, device=device), cfg.eval_root, generate_from=generate_from,
                      corruptions=cfg.eval_corruptions, severities=cfg.eval_severities, seed=cfg.eval_seed,
                      device=device, workers=cfg.workers, progress=cfg.progress,
                      seen=seen_corruptions(branches),
                      title=f"{cfg.dataset} {cfg.model} ({_method(cfg)})", out_dir=run_path,
                      flags={"root": "--eval-root", "corruptions": "--eval-corruptions",
                             "severities": "--eval-severities"}, bn_adapt=cfg.bn_adapt, bn_prior=cfg.bn_prior)
    return result.errors
