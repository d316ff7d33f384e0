"""Every option of a training run (``TrainConfig``) and the per-dataset defaults it resolves to.

Kept apart from the training loop so that the CLI and config files can build and validate a
configuration without importing torch. Each field is declared once: its help, argument group and
metavar live in ``field(metadata=...)``, from which ``auxtrain fit`` makes its flags
(:mod:`auxtrain._flags`), and its ``Literal`` annotation gives both the flag's choices and the
check in :meth:`TrainConfig.resolved`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from auxtrain.config import check_choices
from auxtrain.schedule import Schedule, TyingScale

__all__ = ["TrainConfig", "DATASET_DEFAULTS", "MODES"]

Mode = Literal["auxiliary", "augment", "augmix"]
ViewOrder = Literal["crop_then_corrupt", "corrupt_then_crop"]
MODES: tuple[str, ...] = get_args(Mode)

# The authors' CIFAR recipe.
_RECIPE = {"epochs": 210, "batch_size": 128, "lr": 0.1, "schedule": "step", "warmup_epochs": 0}
# Per-dataset defaults for the fields left at None. Shapes is sized for the quick start on a CPU: the
# smallest budget at which resnet20 learns the task well (benchmarks/results/ablations_shapes.md).
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "shapes": {"model": "resnet20", "epochs": 12, "batch_size": 128, "lr": 0.1, "schedule": "cosine",
               "warmup_epochs": 1, "train_size": 5000, "test_size": 1000, "eval_size": 300},
    "cifar10": {"model": "resnet18", **_RECIPE, "eval_size": None},
    "cifar100": {"model": "resnet18", **_RECIPE, "eval_size": None},
    "imagefolder": {"model": "tv_resnet18", **_RECIPE, "epochs": 90, "eval_size": 5000},
}


def _per_dataset(key: str, none: str = "all") -> str:
    """"default per dataset: shapes 12, CIFAR 210, ...": the help text of a DATASET_DEFAULTS entry."""
    labels: dict[str, list[tuple[str, Any]]] = {}
    for name, defaults in DATASET_DEFAULTS.items():
        value = defaults.get(key)
        label = "CIFAR" if name.startswith("cifar") else name
        labels.setdefault(label, []).append((name, none if value is None else value))
    parts = []
    for label, entries in labels.items():
        if len({v for _, v in entries}) == 1:
            parts.append(f"{label} {entries[0][1]}")
        else:
            parts += [f"{name} {v}" for name, v in entries]
    return "default per dataset: " + ", ".join(parts)


def _option(group: str):
    """``field`` maker for one argument group: ``opt(default, help, **metadata)``."""

    def opt(default: Any, help: str, **metadata: Any) -> Any:
        return field(default=default, metadata={"group": group, "help": help, **metadata})

    return opt


_DATASETS = list(DATASET_DEFAULTS)
_data, _model, _aux = _option("data"), _option("model"), _option("auxiliary training")
_optim, _run, _eval = _option("optimisation"), _option("run"), _option("robustness evaluation after training")


@dataclass
class TrainConfig:
    """Every option of a training run; ``None`` means the per-dataset default (``DATASET_DEFAULTS``).

    Each field is the ``auxtrain fit`` flag of the same name (``data_root`` is ``--data-root``) and
    the key of the same name in a config file; its metadata holds the flag's help.
    """

    dataset: str = _data("shapes", f"{', '.join(_DATASETS[:-1])} or {_DATASETS[-1]}; shapes is generated "
                         "offline", metavar="NAME")
    data_root: str | None = _data(None, "folder holding the dataset files (shapes needs none)", metavar="DIR")
    download: bool = _data(False, "download CIFAR (checksum-verified) when missing")
    train_size: int | None = _data(None, "number of training images (shapes: generated; others: a seeded "
                                   "subset)", metavar="N", default_text=_per_dataset("train_size"))
    test_size: int | None = _data(None, "number of test images (shapes: generated; others: a seeded subset)",
                                  metavar="N", default_text=_per_dataset("test_size"))
    val_size: int | None = _data(None, "hold out N training images as a validation split; the per-epoch "
                                 "accuracy and the final report use it instead of the test set (choose "
                                 "hyperparameters with it, never with the test set)", metavar="N",
                                 default_text="default: none")
    image_size: int | None = _data(None, "imagefolder: training crop size", metavar="PX",
                                   default_text="default: the dataset's")
    workers: int = _data(0, "data-loading worker processes", metavar="N")
    # Apart from `seed`, so that runs of different seeds see the same data.
    data_seed: int = _data(0, "seed of the shapes images and of the --train-size/--test-size subsets (the "
                           "same data whatever --seed)", metavar="SEED")

    model: str | None = _model(None, "backbone name, see `auxtrain list-models`", metavar="NAME",
                               default_text=_per_dataset("model"))
    model_kwargs: str | None = _model(None, "keyword options of the model, comma-separated KEY=VALUE (Python "
                                      "literals), e.g. 'drop_rate=0.1', or 'img_size=32,patch_size=4' for a "
                                      "timm ViT at CIFAR size", metavar="K=V,...",
                                      default_text="default: none")
    pretrained: bool = _model(False, "start from timm's or torchvision's own pretrained weights (timm/* and "
                              "tv_* models; read from their local cache, downloaded only when missing)")
    init: str | None = _model(None, "start from this weights file: a state_dict (torchvision, timm, an "
                              "auxtrain export, or wrapped as {'state_dict': ...} / {'model': ...}), loaded "
                              "strictly into the backbone", metavar="PATH",
                              default_text="default: random init")
    init_exclude: str | None = _model(None, "comma-separated key patterns --init leaves out, e.g. 'fc.*' for "
                                      "a classifier with another class count (it starts fresh)",
                                      metavar="GLOB", default_text="default: none")
    head: Literal["copy", "attention"] = _model("copy", "auxiliary head: a copy of the main head, or the "
                                                "authors' attention head")
    running_stats: Literal["clean", "per_domain"] = _model("clean", "selective BN running statistics: of "
                                                           "the clean domain only, or one set per domain")
    selective_bn: bool = _model(True, "selective BN; --no-selective-bn shares plain BN statistics across "
                                "views (ablation)")
    companions: str | None = _model(None, "comma-separated backbone stages with deep-supervision "
                                    "companion heads", metavar="STAGES", default_text="default: none")
    companion_weight: float = _model(0.3, "weight of the companion losses (Wang et al.'s value)", metavar="W")
    companion_threshold: float = _model(0.0, "DSN hinge: a companion loss below this is switched off",
                                        metavar="LOSS")
    companion_decay: bool = _model(True, "fade the companion weight linearly to 0 over the run")

    mode: Mode = _aux("auxiliary", "auxiliary heads with selective BN, the naive augment baseline "
                      "(the corrupted copies join the main head's batch), or augmix: the AugMix baseline "
                      "(Hendrycks et al.: two AugMix views, Jensen-Shannon consistency, no branches)")
    corruptions: str | None = _aux(None, "one branch per comma item: family, name, or a+b; the training "
                                   "views augmix, authors (or authors_blur, _noise, _jitter, _rotate); "
                                   "'none' = standard training", metavar="BRANCHES",
                                   default_text="default: noise,blur; none with --mode augmix")
    view_order: ViewOrder = _aux("crop_then_corrupt", "crop_then_corrupt: the views corrupt the randomly "
                                 "cropped and flipped clean batch, border included (the method's order); "
                                 "corrupt_then_crop: they corrupt the un-augmented images, then get the "
                                 "same crop and flip, leaving each view a clean border (ablation)")
    severities: str = _aux("1-5", "severities drawn per image, e.g. 1-5 or 3 or 1,3,5", metavar="S")
    alpha: float = _aux(0.05, "weight of the auxiliary heads' cross-entropy")
    beta: float = _aux(0.05, "weight of the self-distillation (KL) term")
    temperature: float = _aux(1.0, "distillation temperature T", metavar="T")
    jsd_weight: float = _aux(12.0, "--mode augmix: weight of the Jensen-Shannon consistency term (the "
                             "paper's 12)", metavar="W")
    gamma: float = _aux(1.0, "weight-tying coefficient in stage two (0 in stage one)")
    tying_scale: TyingScale = _aux("step_lr", "step_lr: under cosine/constant LR, scale --gamma by the step "
                                   "schedule's LR over this one's, so lr x gamma matches the authors' "
                                   "recipe; none: --gamma as given")
    stage_two_start: int | None = _aux(None, "first epoch (0-based, below --epochs) of stage two",
                                       metavar="EPOCH",
                                       default_text="default: 6/7 of the epochs, rounded; 2 or 3 "
                                                    "epochs: the last")

    epochs: int | None = _optim(None, "number of epochs; the schedule is computed from it, so --resume "
                                "cannot change it", metavar="N", default_text=_per_dataset("epochs"))
    batch_size: int | None = _optim(None, "clean images per step, over all processes", metavar="N",
                                    default_text=_per_dataset("batch_size"))
    lr: float | None = _optim(None, "initial SGD learning rate", default_text=_per_dataset("lr"))
    momentum: float = _optim(0.9, "SGD momentum")
    weight_decay: float = _optim(5e-4, "L2 weight decay on all parameters", metavar="WD")
    nesterov: bool = _optim(False, "Nesterov momentum")
    warmup_epochs: float | None = _optim(None, "linear LR warm-up from the first step, in epochs",
                                         metavar="E", default_text=_per_dataset("warmup_epochs"))
    schedule: Schedule | None = _optim(None, "LR schedule; step: /10 at 60,140,180 of 210 epochs, scaled "
                                       "to --epochs", default_text=_per_dataset("schedule"))

    seed: int = _run(0, "random seed of the weights, the data order and every corruption")
    device: str = _run("auto", "auto (cuda if available), cpu, cuda or cuda:N", metavar="DEV")
    amp: Literal["bf16", "fp16"] | None = _run(None, "mixed precision: bf16, or fp16 (CUDA only); --amp "
                                               "alone is bf16", nargs="?", const="bf16",
                                               default_text="default: off")
    channels_last: Literal["auto", "on", "off"] = _run(
        "auto", "channels-last memory format; auto: on for CPU and CUDA, where it is faster; "
        "--channels-last alone is on", nargs="?", const="on")
    domain_passes: Literal["auto", "stacked", "separate"] = _run(
        "auto", "the clean batch and its views as one stacked pass, or one pass per domain (same numbers); "
        "auto: separate on CPU, stacked on GPUs")
    views_ahead: Literal["auto", "on", "off"] = _run(
        "auto", "build the next batch's crops, flips and views in a background thread during the step (same "
        "numbers); auto: on for GPUs, off on CPU, where the step already keeps every core busy")
    compile: bool = _run(False, "torch.compile the training model")
    out: str | None = _run(None, "run directory", metavar="DIR",
                           default_text="default: runs/<dataset>-<model>-<mode>-<time>")
    resume: bool = _run(False, "continue the run in --out from its last checkpoint, with its options")
    overwrite: bool = _run(False, "replace an existing run in --out")
    progress: bool = _run(True, "progress bar per epoch")
    log_interval: int = _run(50, "print a step line (running loss and accuracy, images/s, lr, ETA) every N "
                             "steps, flushed at once, unless a progress bar on a terminal shows them; 0: "
                             "epoch lines only", metavar="N")
    logger: Literal["none", "tensorboard"] = _run("none", "also write the step and epoch numbers as "
                                                  "TensorBoard scalars into RUN_DIR/tensorboard (needs "
                                                  "the tensorboard package)")

    eval: bool = _eval(True, "evaluate corruption errors and write the report (report.md, .csv, .png)")
    eval_root: str | None = _eval(None, "existing -C folder (NAME.npy + labels.npy)", metavar="DIR",
                                  default_text="default: generate one from the test split into "
                                               "RUN_DIR/corrupted_test")
    eval_size: int | None = _eval(None, "test images in the generated -C set", metavar="N",
                                  default_text=_per_dataset("eval_size"))
    eval_corruptions: str = _eval("all", "corruptions evaluated (all, common, extra, or a family)",
                                  metavar="SUBSET")
    eval_severities: str = _eval("1-5", "severities evaluated", metavar="S")
    bn_adapt: bool = _eval(False, "also report BN-adapted errors (Schneider et al. 2020: each test batch's "
                           "statistics mixed with the running ones), beside the standard numbers")
    bn_prior: float = _eval(16.0, "--bn-adapt prior strength N: statistics = N/(N+n) running + n/(N+n) "
                            "batch, n the batch size (0: batch only, inf: running only)", metavar="N")
    # Fixed apart from `seed`, so that runs of any seed are compared on the same images.
    eval_seed: int = _eval(0, "seed of the generated -C set (the same images whatever --seed)",
                           metavar="SEED")

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
        if isinstance(cfg.channels_last, bool):  # config files of older runs say true / false
            cfg.channels_last = "on" if cfg.channels_last else "off"
        if cfg.corruptions is None:  # AugMix trains on its own views, the other modes on noise and blur
            cfg.corruptions = "none" if cfg.mode == "augmix" else "noise,blur"
        check_choices(cfg)  # mode, head, running_stats, schedule, amp: their Literal annotations
        _check_domain_passes(cfg)
        checks = [("epochs", isinstance(cfg.epochs, int) and cfg.epochs >= 1, "a positive integer"),
                  ("batch_size", isinstance(cfg.batch_size, int) and cfg.batch_size >= 1, "positive"),
                  ("lr", _finite_positive(cfg.lr), "a positive finite number"),
                  ("workers", cfg.workers >= 0, "0 or more"),
                  ("log_interval", _positive_int(cfg.log_interval) or (type(cfg.log_interval) is int
                                                                       and cfg.log_interval == 0),
                   "0 (off) or a positive number of steps"),
                  ("val_size", cfg.val_size is None or _positive_int(cfg.val_size),
                   "a positive integer, or unset for no validation split")]
        for name, ok, want in checks:
            if not ok:  # named as typed on the command line; a config file uses the same names
                raise ValueError(f"{_flag(name)} {getattr(cfg, name)!r}: must be {want}")
        _check_sizes(cfg)
        if cfg.logger == "tensorboard":
            from auxtrain.run_log import tensorboard_available

            if not tensorboard_available():
                raise ValueError("--logger tensorboard needs the tensorboard package: pip install "
                                 "tensorboard (or auxtrain[tensorboard]), or drop --logger")
        _check_stage_two_start(cfg)
        if cfg.val_size and cfg.dataset == "imagefolder":
            raise ValueError("--val-size holds out images of shapes or CIFAR; an imagefolder dataset "
                             "validates on its root/val folder, so put the validation images there instead")
        if cfg.val_size and cfg.eval_root is not None:
            raise ValueError("--val-size reports on corrupted copies of the validation images, but "
                             "--eval-root points at a test-set -C folder; drop one of the two")
        _check_eval(cfg)
        from auxtrain.init_weights import check_start_options

        check_start_options(cfg)  # --model-kwargs, --init, --init-exclude, --pretrained
        _check_augmix(cfg)
        if cfg.out is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            model = cfg.model.replace("/", "-")  # timm/resnet18: one folder, not two
            cfg.out = str(Path("runs") / f"{cfg.dataset}-{model}-{cfg.mode}-{stamp}")
        return cfg


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _finite_positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and value > 0


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_sizes(cfg: TrainConfig) -> None:
    """``--train-size``, ``--test-size`` and ``--eval-size``: None (the default) or at least 1.

    0 is an error rather than "the default": the data code reads a falsy size as "not given", so
    ``--train-size 0`` would silently train on the dataset's full default size.
    """
    for name in ("train_size", "test_size", "eval_size"):
        value = getattr(cfg, name)
        if value is not None and not _positive_int(value):
            raise ValueError(f"{_flag(name)} {value!r} must be a positive number of images; leave it "
                             f"unset for the default ({_per_dataset(name)})")


def _check_eval(cfg: TrainConfig) -> None:
    """The evaluation options, checked now so that a typo fails before training, not after it.

    The severities are checked whatever ``--eval`` (a typo either way), and so are the corruption
    names when the -C set is generated; with ``--eval-root`` (when the run evaluates) the folder
    must exist, and a name outside the vocabulary must be one of its files or folders (a custom
    corruption), as the evaluation itself will require. A CIFAR-C style folder is opened (memory
    maps and labels.npy: cheap), so a broken one fails now too. The messages name the flags as typed.
    """
    import corruptions  # here: it imports torch, and `auxtrain fit --help` must not

    severities = corruptions.parse_severities(cfg.eval_severities, what="--eval-severities")
    if not isinstance(cfg.eval_seed, int) or isinstance(cfg.eval_seed, bool):
        raise ValueError(f"--eval-seed {cfg.eval_seed!r} must be an integer")
    if not (cfg.eval and cfg.eval_root is not None):
        corruptions.resolve_names(cfg.eval_corruptions, what="--eval-corruptions")
        return
    root = Path(cfg.eval_root)
    if not root.is_dir():
        what = "is a file" if root.exists() else "does not exist"
        raise ValueError(f"--eval-root {root} {what}; pass the folder of an existing -C set "
                         "(NAME.npy + labels.npy), or leave --eval-root out to generate one from the "
                         "test split")
    from auxtrain.data.corrupted import open_corrupted, select_names

    flags = {"root": "--eval-root", "corruptions": "--eval-corruptions", "severities": "--eval-severities"}
    if any(root.glob("*.npy")):
        open_corrupted(root, cfg.eval_corruptions, severities, flags)
        return
    # An image-folder tree: its corruption/severity folders only; scanning every image now would cost
    # as much as the evaluation's own scan.
    found = [d.name for d in root.iterdir() if d.is_dir() and any(s.name.isdigit() for s in d.iterdir())]
    if not found:
        raise ValueError(f"--eval-root {root} holds no -C set: neither NAME.npy + labels.npy files nor "
                         "corruption/severity/class/image folders; build one with `auxtrain make-c`, or "
                         "leave --eval-root out to generate one from the test split")
    select_names(cfg.eval_corruptions, found, root, flags)


def _check_domain_passes(cfg: TrainConfig) -> None:
    """``--domain-passes separate`` needs domains to separate: auxiliary heads with selective BN."""
    if cfg.domain_passes == "separate" and (cfg.mode != "auxiliary" or not cfg.selective_bn
                                            or cfg.corruptions.strip().lower() == "none"):
        raise ValueError("--domain-passes separate runs one pass per selective-BN domain, so it needs "
                         "--mode auxiliary with --corruptions other than none and selective BN (no "
                         "--no-selective-bn); use --domain-passes auto or stacked")
def _check_augmix(cfg: TrainConfig) -> None:
    """``--mode augmix`` trains without branches or companions; ``--jsd-weight``, ``--bn-prior`` >= 0."""
    if cfg.mode == "augmix" and cfg.corruptions.strip().lower() != "none":
        raise ValueError(f"--mode augmix trains the main head on two AugMix views, not on branches, but "
                         f"--corruptions is {cfg.corruptions!r}; leave --corruptions out (or pass none), "
                         "or use --mode auxiliary --corruptions augmix for AugMix views through an "
                         "auxiliary head")
    if cfg.mode == "augmix" and cfg.companions:
        raise ValueError("--companions is not supported with --mode augmix (the companions would see the "
                         "AugMix views with the clean labels only); drop one of the two")
    for name in ("jsd_weight", "bn_prior"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{_flag(name)} {value!r} must be a number, 0 or more")


def _check_stage_two_start(cfg: TrainConfig) -> None:
    """``stage_two_start`` is a 0-based epoch of the run; past its end only when stage two does nothing."""
    start = cfg.stage_two_start
    if start is None:
        return
    if cfg.gamma == 0:  # no weight tying: any start leaves the run unchanged
        if not isinstance(start, int) or start < 0:
            raise ValueError(f"--stage-two-start {start!r} must be a 0-based epoch number, 0 or more")
        return
    last = cfg.epochs - 1
    if not isinstance(start, int) or not 0 <= start <= last:
        raise ValueError(f"--stage-two-start {start!r} is not an epoch of the run: with --epochs "
                         f"{cfg.epochs} it must be 0 to {last} (0-based) for stage two to run; leave it "
                         "unset for 6/7 of the epochs, or pass --gamma 0 to train without weight tying")
