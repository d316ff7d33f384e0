"""Every option of a training run (``TrainConfig``) and the per-dataset defaults it resolves to.

Kept apart from the training loop so that the CLI and config files can build and validate a
configuration without importing torch.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auxtrain.schedule import SCHEDULES

__all__ = ["TrainConfig", "DATASET_DEFAULTS", "MODES", "RESUMABLE_CHANGES"]

MODES = ("auxiliary", "augment")

# The authors' CIFAR recipe.
_RECIPE = {"epochs": 210, "batch_size": 128, "lr": 0.1, "schedule": "step", "warmup_epochs": 0}
# Per-dataset defaults for the fields left at None. Shapes is sized for the quick start on a CPU: resnet20
# needs about 5 epochs of 5,000 shapes before it leaves chance level, so fewer steps would teach nothing
# (10 epochs on 4,000 reached 37% clean accuracy, 12 on 5,000 about 80%).
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "shapes": {"model": "resnet20", "epochs": 12, "batch_size": 128, "lr": 0.1, "schedule": "cosine",
               "warmup_epochs": 1, "train_size": 5000, "test_size": 1000, "eval_size": 300},
    "cifar10": {"model": "resnet18", **_RECIPE, "eval_size": None},
    "cifar100": {"model": "resnet18", **_RECIPE, "eval_size": None},
    "imagefolder": {"model": "tv_resnet18", **_RECIPE, "epochs": 90, "eval_size": 5000},
}
# Fields that may change between a run and its --resume (they do not change what is trained).
RESUMABLE_CHANGES = {"epochs", "device", "workers", "data_root", "download", "eval", "eval_size",
                     "eval_corruptions", "eval_severities", "eval_seed", "eval_root", "progress", "out",
                     "resume", "overwrite", "compile"}


@dataclass
class TrainConfig:
    """Every option of a training run; ``None`` means the per-dataset default (``DATASET_DEFAULTS``)."""

    # data
    dataset: str = "shapes"            # shapes | cifar10 | cifar100 | imagefolder
    data_root: str | None = None       # folder with the dataset files (shapes needs none)
    download: bool = False             # fetch CIFAR with checksum verification when missing
    train_size: int | None = None      # shapes: images generated; others: a seeded subset of this size
    test_size: int | None = None       # same for the test split (None: the whole split)
    val_size: int | None = None        # hold out N training images as a validation split that replaces
    #                                    the test split in the per-epoch accuracy and the final report:
    #                                    choose hyperparameters on it, never on the test set
    image_size: int | None = None      # imagefolder: training crop size (default of the dataset)
    workers: int = 0                   # DataLoader worker processes
    data_seed: int = 0                 # shapes generation and --train-size/--test-size subsets (fixed
                                       # apart from `seed`, so runs of different seeds see the same data)
    # model
    model: str | None = None           # registry name (auxtrain list-models); default per dataset
    head: str = "copy"                 # auxiliary head: copy of the main head, or "attention" (authors')
    running_stats: str = "clean"       # SelectiveBatchNorm2d running stats: "clean" or "per_domain"
    selective_bn: bool = True          # False (ablation): one plain BatchNorm2d shared by all views
    companions: str | None = None      # comma-separated backbone stages for deep-supervision companions
    companion_weight: float = 0.3      # weight of the companion losses (Wang et al.: 0.3)
    companion_threshold: float = 0.0   # DSN hinge: a companion's loss below this is switched off
    companion_decay: bool = True       # fade the companion weight linearly to 0 over the run
    # auxiliary training
    mode: str = "auxiliary"            # "auxiliary" (heads + selective BN) or "augment" (naive baseline)
    corruptions: str = "noise,blur"    # one branch per comma item: family, name, or a+b; "none" = standard
    severities: str = "1-5"            # severities drawn uniformly per image
    alpha: float = 0.05                # weight of the auxiliary heads' cross-entropy
    beta: float = 0.05                 # weight of the self-distillation (KL) term
    temperature: float = 1.0           # distillation temperature T
    gamma: float = 1.0                 # weight-tying coefficient in stage two (0 in stage one)
    stage_two_start: int | None = None  # first 0-based epoch of stage two; default 6/7 of the epochs
    # optimisation
    epochs: int | None = None          # default per dataset (210 for CIFAR, the authors' recipe)
    batch_size: int | None = None      # clean images per step, global over all processes (CIFAR: 128)
    lr: float | None = None            # initial SGD learning rate (CIFAR: 0.1)
    momentum: float = 0.9              # SGD momentum
    weight_decay: float = 5e-4         # L2 weight decay on all parameters
    nesterov: bool = False             # Nesterov momentum
    warmup_epochs: float | None = None  # linear LR warm-up from the first step (CIFAR: 0, as the authors)
    schedule: str | None = None        # "step" (/10 at 60,140,180 of 210, scaled; CIFAR), "cosine",
                                       # or "constant"
    # run
    seed: int = 0                      # seeds the weights, the data order and every corruption
    device: str = "auto"               # "auto" (cuda if available), "cpu", "cuda", "cuda:N"
    amp: str | None = None             # mixed precision: None, "bf16" or "fp16" (fp16 needs CUDA)
    channels_last: bool = False        # channels-last memory format (faster convolutions on GPUs)
    compile: bool = False              # torch.compile the training model
    out: str | None = None             # run directory; default runs/<dataset>-<model>-<mode>-<time>
    resume: bool = False               # continue the run in `out` from its last checkpoint
    overwrite: bool = False            # replace an existing run in `out`
    progress: bool = True              # tqdm progress bar per epoch
    # robustness evaluation at the end
    eval: bool = True                  # evaluate corruption errors and write the report
    eval_root: str | None = None       # existing -C folder (NAME.npy + labels.npy); default: generate one
    eval_size: int | None = None       # test images corrupted for the generated -C set (None = all)
    eval_corruptions: str = "all"      # corruption subset of the evaluation
    eval_severities: str = "1-5"       # severities of the evaluation
    eval_seed: int = 0                 # seed of the generated -C set: fixed, so runs of any seed compare

    def resolved(self) -> TrainConfig:
        """A copy with the per-dataset defaults filled in and every field validated."""
        if self.dataset not in DATASET_DEFAULTS:
            raise ValueError(f"unknown dataset {self.dataset!r}; valid: {', '.join(DATASET_DEFAULTS)}")
        cfg = dataclasses.replace(self)
        for key, value in DATASET_DEFAULTS[self.dataset].items():
            if key != "eval_size" and getattr(cfg, key) is None:
                setattr(cfg, key, value)
        if cfg.eval_size is None and cfg.eval_root is None:
            cfg.eval_size = DATASET_DEFAULTS[self.dataset]["eval_size"]
        checks = [("mode", cfg.mode in MODES, f"one of {', '.join(MODES)}"),
                  ("schedule", cfg.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
                  ("head", cfg.head in ("copy", "attention"), "'copy' or 'attention'"),
                  ("running_stats", cfg.running_stats in ("clean", "per_domain"), "'clean' or 'per_domain'"),
                  ("amp", cfg.amp in (None, "bf16", "fp16"), "None, 'bf16' or 'fp16'"),
                  ("epochs", isinstance(cfg.epochs, int) and cfg.epochs >= 1, "a positive integer"),
                  ("batch_size", isinstance(cfg.batch_size, int) and cfg.batch_size >= 1, "positive"),
                  ("lr", cfg.lr > 0, "a positive number"), ("workers", cfg.workers >= 0, "0 or more"),
                  ("val_size", cfg.val_size is None or (isinstance(cfg.val_size, int) and cfg.val_size >= 1),
                   "None or a positive integer")]
        for name, ok, want in checks:
            if not ok:
                raise ValueError(f"{name} must be {want}, got {getattr(cfg, name)!r}")
        if cfg.val_size and cfg.dataset == "imagefolder":
            raise ValueError("--val-size holds out images of shapes or CIFAR; an imagefolder dataset "
                             "validates on its root/val folder, so put the validation images there instead")
        if cfg.val_size and cfg.eval_root is not None:
            raise ValueError("--val-size reports on corrupted copies of the validation images, but "
                             "--eval-root points at a test-set -C folder; drop one of the two")
        if cfg.out is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            cfg.out = str(Path("runs") / f"{cfg.dataset}-{cfg.model}-{cfg.mode}-{stamp}")
        return cfg
