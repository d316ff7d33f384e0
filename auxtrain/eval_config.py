"""Every option of ``auxtrain eval`` (:class:`EvalConfig`) and ``auxtrain make-c`` (:class:`MakeCConfig`).

Declared once here and turned into command-line flags, config-file keys (``-c FILE``, the flag
names as keys) and library arguments alike; importing this module does not import torch.

Each field is one flag (``data_root`` -> ``--data-root``). Field metadata: ``help`` (the help text,
without the default, which is appended from the field), ``group`` (the help section), ``metavar``;
a ``typing.Literal`` type lists the choices; a bool field becomes ``--x/--no-x``. Fields the
command cannot run without (``checkpoint``, ``out``, ``dataset``) default to None so that a config
file may supply them; :meth:`EvalConfig.check` / :meth:`MakeCConfig.check` reject what is missing.
"""

from dataclasses import dataclass, field, fields
from typing import Literal, get_args

__all__ = ["EvalConfig", "MakeCConfig", "CLEAN_DATASETS"]

DatasetName = Literal["shapes", "cifar10", "cifar100"]  # datasets whose test split eval/make-c can read
CLEAN_DATASETS: tuple[str, ...] = get_args(DatasetName)
_MODEL = "model and data"
_EVAL = "evaluation"


def _opt(default, help: str, group: str, metavar: str | None = None):
    meta = {"help": help, "group": group}
    if metavar is not None:
        meta["metavar"] = metavar
    return field(default=default, metadata=meta)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_common(cfg, positive: tuple[str, ...], required: tuple[str, ...]) -> None:
    for name in required:
        if getattr(cfg, name) in (None, ""):
            raise ValueError(f"{_flag(name)} is required; pass it on the command line or in the -c file")
    for name in positive:
        value = getattr(cfg, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{_flag(name)} {value!r} must be a positive integer")
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.type is bool and not isinstance(value, bool):
            raise ValueError(f"{_flag(f.name)} must be true or false, got {value!r}")


@dataclass
class EvalConfig:
    """Options of ``auxtrain eval``: which model, which -C set (or how to generate it), the report."""

    checkpoint: str | None = _opt(None, "exported model (model_plain.pt); or --model with --weights", _MODEL,
                                  "FILE")
    model: str | None = _opt(None, "instead of --checkpoint: a registered model name (auxtrain list-models: "
                                   "timm/..., tv_..., ...) whose --weights to evaluate", _MODEL, "NAME")
    weights: str | None = _opt(None, "with --model: a plain state_dict file (torchvision, timm, auxtrain; "
                                     "wrapped or not), loaded strictly", _MODEL, "FILE")
    model_kwargs: str | None = _opt(None, "with --model: its keyword options, comma-separated KEY=VALUE",
                                    _MODEL, "K=V,...")
    mean: str | None = _opt(None, "with --model: input mean per channel, e.g. 0.485,0.456,0.406 (default: "
                                  "the model's own, from timm's pretrained_cfg or torchvision's weights)",
                            _MODEL, "R,G,B")
    std: str | None = _opt(None, "with --model: input std per channel (default: the model's own)", _MODEL,
                           "R,G,B")
    data_root: str | None = _opt(None, "the -C folder (with --generate: the clean dataset's)", _MODEL, "DIR")
    clean_root: str | None = _opt(
        None, "clean test set: a .npy of uint8 (N, H, W, 3) images, a class/image folder, or the dataset "
              "folder of --clean-dataset (default: DIR/clean.npy if present)", _MODEL, "PATH")
    clean_dataset: DatasetName | None = _opt(
        None, "read the clean test split of this dataset (from --clean-root)", _MODEL)
    generate: bool = _opt(False, "generate the corrupted set from --dataset's test split (cached in "
                                 "OUT/corrupted_test)", _MODEL)
    dataset: DatasetName | None = _opt(None, "with --generate: the dataset",
                                                                     _MODEL)
    test_size: int | None = _opt(None, "with --generate: the N test images `fit --test-size N` uses (a "
                                       "seeded subset; shapes: generated)", _MODEL, "N")
    data_seed: int = _opt(0, "with --generate / --clean-dataset: seed of the shapes images and of the "
                             "--test-size subset, as in fit", _MODEL, "SEED")
    seed: int = _opt(0, "with --generate: corruption seed", _MODEL)
    corruptions: str | None = _opt(None, "names or families, comma-separated, or all/common/extra "
                                         "(default: every file found)", _EVAL, "SUBSET")
    severities: str | None = _opt(None, "e.g. 1-5, 3 or 1,3,5 (default: all)", _EVAL, "S")
    baseline: str | None = _opt(None, "another model's report folder or errors.csv, or 'alexnet' (the "
                                      "published ImageNet-C AlexNet errors: the official mCE): adds "
                                      "normalised and relative mCE", _EVAL, "DIR_OR_CSV")
    batch_size: int = _opt(256, "images per batch", _EVAL, "N")
    workers: int = _opt(0, "DataLoader worker processes decoding an image-folder -C set (0: in the main "
                           "process; a CIFAR-C .npy set is always read in the main process)", _EVAL, "N")
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N", _EVAL, "DEV")
    out: str | None = _opt(None, "report folder (created if missing); required", _EVAL, "DIR")
    title: str | None = _opt(None, "report title (default: the checkpoint path, or the model, weights and "
                                   "normalisation)", _EVAL)
    title: str | None = _opt(None, "report title (default: the checkpoint path)", _EVAL)
    bn_adapt: bool = _opt(False, "also report BN-adapted errors (Schneider et al. 2020: each test batch's "
                                 "statistics mixed with the running ones), beside the standard numbers",
                          _EVAL)
    bn_prior: float = _opt(16.0, "--bn-adapt prior strength N: statistics = N/(N+n) running + n/(N+n) "
                                 "batch, n = --batch-size (0: batch only, inf: running only)", _EVAL, "N")
    progress: bool = _opt(True, "progress bar", _EVAL)

    def check(self) -> "EvalConfig":
        """``self`` if the options fit together; else ValueError naming the flags to fix."""
        _check_common(self, ("batch_size", "test_size"), ("out",))
        if not self.checkpoint and not self.model:
            raise ValueError("--checkpoint is required (an auxtrain export, model_plain.pt), or --model NAME "
                             "with --weights FILE; pass it on the command line or in the -c file")
        if self.checkpoint and self.model:
            raise ValueError("pass --checkpoint FILE or --model NAME --weights FILE, not both")
        if bool(self.model) != bool(self.weights):
            raise ValueError("--model NAME and --weights FILE go together: pass both")
        if self.checkpoint and any(getattr(self, n) for n in ("model_kwargs", "mean", "std")):
            raise ValueError("--model-kwargs, --mean and --std go with --model/--weights; an exported "
                             "--checkpoint carries its own")
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 0:
            raise ValueError(f"--workers {self.workers!r} must be 0 or a positive integer")
        if isinstance(self.bn_prior, bool) or not isinstance(self.bn_prior, (int, float)) \
                or not self.bn_prior >= 0:
            raise ValueError(f"--bn-prior {self.bn_prior!r} must be a number, 0 or more (inf: running "
                             "statistics only)")
        for name in ("dataset", "clean_dataset"):
            value = getattr(self, name)
            if value is not None and value not in CLEAN_DATASETS:
                raise ValueError(f"{_flag(name)} {value!r} is not supported here; use "
                                 f"{', '.join(CLEAN_DATASETS)}")
        if self.generate and not self.dataset:
            raise ValueError(f"--generate needs --dataset ({', '.join(CLEAN_DATASETS)})")
        if not self.generate and not self.data_root:
            raise ValueError("--data-root DIR (the -C folder) is required; or use --generate --dataset NAME")
        if self.clean_dataset and self.generate:
            raise ValueError("--clean-dataset is implied by --generate --dataset; drop one of them")
        return self


_DATA, _CORR, _EXEC = "data", "corruptions", "execution"


@dataclass
class MakeCConfig:
    """Options of ``auxtrain make-c``: which test split, which corruptions and severities, where."""

    dataset: DatasetName | None = _opt(None, "whose test split to corrupt; "
                                                                          "required", _DATA)
    data_root: str | None = _opt(None, "folder holding cifar-10-batches-py/ or cifar-100-python/ (not "
                                       "needed for shapes)", _DATA, "DIR")
    test_size: int | None = _opt(None, "the N test images `fit --test-size N` uses: a seeded subset "
                                       "(default: all; shapes: N generated, default 2,000)", _DATA, "N")
    data_seed: int = _opt(0, "seed of the shapes images and of the --test-size subset, as in fit", _DATA,
                          "SEED")
    out: str | None = _opt(None, "output folder (created if missing); required", _DATA, "DIR")
    corruptions: str = _opt("all", "comma-separated names or subsets: all, common, extra, noise, blur, "
                                   "weather, digital", _CORR, "LIST")
    severities: str = _opt("1-5", "e.g. 1-5, 3 or 1,3,5", _CORR, "S")
    seed: int = _opt(0, "corruption seed", _CORR)
    profile: Literal["auto", "cifar", "imagenet"] = _opt("auto", "severity tables: auto picks by image "
                                                                 "size", _CORR)
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N", _EXEC, "DEV")
    threads: int | None = _opt(None, "cells of images corrupted at once per process (default: torch's thread "
                                     "count; under torchrun 1 per process); the output does not depend on it",
                               _EXEC, "N")
    progress: bool = _opt(True, "progress bar", _EXEC)

    def check(self) -> "MakeCConfig":
        """``self`` if the options are usable; else ValueError naming the flag to fix."""
        _check_common(self, ("threads", "test_size"), ("dataset", "out"))
        if self.dataset not in CLEAN_DATASETS:
            raise ValueError(f"--dataset {self.dataset!r} is not supported; use {', '.join(CLEAN_DATASETS)}")
        return self
