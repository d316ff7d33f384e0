"""Command-line interface: argument parsing only; every command calls the library.

Each subcommand has an ``_add_<command>`` function that declares its flags and a ``_run_<command>``
function that turns the parsed flags into one library call and returns an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EPILOG_FIT = """example:
  auxtrain fit --dataset shapes --corruptions noise,blur --out runs/shapes
  auxtrain fit --dataset cifar100 --data-root data --model resnet18 --corruptions noise,blur,weather \\
      --epochs 210 --out runs/c100-r18 --amp --channels-last
  auxtrain fit --dataset shapes --corruptions none --out runs/standard     # standard training
  auxtrain fit --dataset shapes --mode augment --out runs/augment          # naive augmentation baseline
  auxtrain fit -c run.yaml --seed 1                                        # options from a file, then flags
  auxtrain fit --resume --out runs/shapes                                  # continue after Ctrl-C or a crash
  torchrun --nproc-per-node 4 -m auxtrain fit --dataset cifar100 --data-root data --out runs/ddp

Branches (--corruptions): each comma-separated item is one auxiliary branch: a family (noise, blur,
weather, digital, extra), a corruption name (gaussian_noise, ...), or names joined by "+".
"""
EPILOG_EVAL = """examples:
  auxtrain eval --checkpoint runs/c100/model_plain.pt --data-root data/CIFAR-100-C \\
      --clean-dataset cifar100 --clean-root data --out reports/c100
  auxtrain eval --checkpoint runs/c100/model_plain.pt --data-root data/CIFAR-100-C \\
      --baseline reports/standard --out reports/c100-vs-standard        # adds normalised/relative mCE
  auxtrain eval --checkpoint runs/shapes/model_plain.pt --generate --dataset shapes --out reports/shapes
  auxtrain eval --checkpoint m.pt --data-root data/ImageNet-C --corruptions noise,blur --severities 1-3 \\
      --clean-root data/imagenet/val --out reports/in

--data-root is a CIFAR-C folder (NAME.npy + labels.npy, streamed from memory maps) or an ImageNet-C
style tree (corruption/severity/class/image). With --generate it is the clean dataset's folder and the
corrupted set is generated once (fixed seed) and cached in OUT/corrupted_test.
Writes OUT/errors.csv, accuracy.csv, report.csv, summary.json, report.md and report.png.
"""
EPILOG_MAKE_C = """example:
  auxtrain make-c --dataset cifar100 --data-root data --out data/CIFAR-100-C
  auxtrain make-c --dataset cifar10 --data-root data --out data/CIFAR-10-C --device cuda
  auxtrain make-c --dataset shapes --out data/shapes-C --corruptions noise,fog --severities 1,3,5

Writes OUT/NAME.npy ((N * S), H, W, 3) uint8, the test images at each severity in turn) and
OUT/labels.npy, as CIFAR-10-C. Each file appears only when complete: rerun the same command after an
interruption and finished files are verified and skipped (OUT/make_c.json pins the settings).
"""


class UserError(Exception):
    """A problem with the user's input: printed without a traceback, exit code 2."""


def _add_fit(sub: argparse._SubParsersAction) -> None:
    from auxtrain.train_config import TrainConfig

    p = sub.add_parser(
        "fit", help="train a robust classifier (auxiliary training) and export a plain model",
        description="Train a classifier with auxiliary training and export a plain model.\n"
                    "Options come from the defaults, then -c/--config FILE (YAML or TOML, same names), "
                    "then the flags.",
        epilog=EPILOG_FIT, formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # unset flags stay absent, so config-file values apply
    )
    defaults = TrainConfig()

    def add(group, flag, help, **kw):
        default = getattr(defaults, flag.lstrip("-").replace("-", "_"), None)
        if default not in (None, False) and "default" not in help:
            help = f"{help} (default: {default})"
        group.add_argument(flag, help=help, **kw)

    p.add_argument("-c", "--config", metavar="FILE", help="YAML or TOML file of options (flags override it)")
    g = p.add_argument_group("data")
    add(g, "--dataset", "shapes (built in), cifar10, cifar100 or imagefolder", metavar="NAME")
    add(g, "--data-root", "folder holding the dataset files", metavar="DIR")
    add(g, "--download", "download CIFAR (checksum-verified) when missing", action="store_true")
    add(g, "--train-size", "number of training images (shapes: generated; others: a seeded subset)",
        type=int, metavar="N")
    add(g, "--test-size", "number of test images", type=int, metavar="N")
    add(g, "--val-size", "hold out N training images as a validation split; the per-epoch accuracy and the "
        "final report use it instead of the test set (choose hyperparameters with it)", type=int, metavar="N")
    add(g, "--image-size", "imagefolder: training crop size", type=int, metavar="PX")
    add(g, "--data-seed", "seed of the shapes images and of the --train-size/--test-size subsets "
        "(default: 0, the same data whatever --seed)", type=int, metavar="SEED")
    add(g, "--workers", "data-loading worker processes", type=int, metavar="N")
    g = p.add_argument_group("model")
    add(g, "--model", "backbone name, see `auxtrain list-models` (default per dataset)", metavar="NAME")
    add(g, "--head", "auxiliary head type", choices=["copy", "attention"])
    add(g, "--running-stats", "selective BN running statistics", choices=["clean", "per_domain"])
    add(g, "--selective-bn", "selective BN; --no-selective-bn shares plain BN statistics across views "
        "(ablation)", action=argparse.BooleanOptionalAction)
    add(g, "--companions", "comma-separated backbone stages with deep-supervision companion heads",
        metavar="STAGES")
    g = p.add_argument_group("auxiliary training")
    add(g, "--mode", "auxiliary heads, or the naive augment baseline", choices=["auxiliary", "augment"])
    add(g, "--corruptions", "one branch per comma item: family, name, or a+b; 'none' = standard training",
        metavar="BRANCHES")
    add(g, "--severities", "severities drawn per image, e.g. 1-5 or 3 or 1,3,5", metavar="S")
    add(g, "--alpha", "weight of the auxiliary cross-entropy", type=float)
    add(g, "--beta", "weight of the self-distillation term", type=float)
    add(g, "--temperature", "distillation temperature", type=float)
    add(g, "--gamma", "weight-tying coefficient in stage two", type=float)
    add(g, "--stage-two-start", "first epoch (0-based) of stage two; default 6/7 of the epochs",
        type=int, metavar="EPOCH")
    g = p.add_argument_group("optimisation")
    add(g, "--epochs", "number of epochs (default per dataset: shapes 12, CIFAR 210)", type=int,
        metavar="N")
    add(g, "--batch-size", "clean images per step, over all processes (default per dataset: CIFAR 128)",
        type=int, metavar="N")
    add(g, "--lr", "initial learning rate (default per dataset: CIFAR 0.1)", type=float)
    add(g, "--momentum", "SGD momentum", type=float)
    add(g, "--weight-decay", "weight decay", type=float)
    add(g, "--nesterov", "Nesterov momentum", action=argparse.BooleanOptionalAction)
    add(g, "--warmup-epochs", "linear LR warm-up length (default per dataset: CIFAR 0, shapes 1)",
        type=float, metavar="E")
    add(g, "--schedule", "LR schedule; step: /10 at 60,140,180 of 210 epochs, scaled (default per "
        "dataset: CIFAR step, shapes cosine)", choices=["step", "cosine", "constant"])
    g = p.add_argument_group("run")
    add(g, "--out", "run directory (default: runs/<dataset>-<model>-<mode>-<time>)", metavar="DIR")
    add(g, "--resume", "continue the run in --out from its last checkpoint", action="store_true")
    add(g, "--overwrite", "replace an existing run in --out", action="store_true")
    add(g, "--seed", "random seed (weights, data order, corruptions)", type=int)
    add(g, "--device", "auto, cpu, cuda or cuda:N", metavar="DEV")
    add(g, "--amp", "mixed precision (bf16, or fp16 on CUDA)", nargs="?", const="bf16",
        choices=["bf16", "fp16"])
    add(g, "--channels-last", "channels-last memory format", action="store_true")
    add(g, "--compile", "torch.compile the model", action="store_true")
    add(g, "--progress", "progress bar per epoch", action=argparse.BooleanOptionalAction)
    g = p.add_argument_group("robustness evaluation after training")
    add(g, "--eval", "evaluate corruption errors and write report.{csv,md,png}",
        action=argparse.BooleanOptionalAction)
    add(g, "--eval-root", "existing -C folder (NAME.npy + labels.npy); default: generate one from the "
        "test split into RUN_DIR/corrupted_test", metavar="DIR")
    add(g, "--eval-size", "test images in the generated -C set (default per dataset)", type=int, metavar="N")
    add(g, "--eval-corruptions", "corruptions evaluated (all, common, extra, or a family)", metavar="SUBSET")
    add(g, "--eval-severities", "severities evaluated", metavar="S")
    add(g, "--eval-seed", "seed of the generated -C set, fixed so that runs of different seeds are "
        "compared on the same images (default: 0)", type=int, metavar="SEED")
    p.set_defaults(run=_run_fit)


def _fit_config(args: argparse.Namespace):
    """TrainConfig from defaults < the resumed run's config < -c FILE < flags."""
    import dataclasses
    from pathlib import Path

    from auxtrain.config import load_config_file, merge_config
    from auxtrain.run_dir import RunDir
    from auxtrain.train_config import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    flags = {k: v for k, v in vars(args).items() if k in names}
    from_file = load_config_file(args.config) if getattr(args, "config", None) else {}
    layers = {**from_file, **flags}
    saved = {}
    out = layers.get("out")
    if layers.get("resume") and out and (Path(out) / RunDir.CONFIG).is_file():
        # --resume --out DIR is enough: the run's own config is the base layer.
        saved = {k: v for k, v in RunDir(out, resume=True).read_config().items()
                 if k in names and k not in ("resume", "overwrite")}
    return merge_config(TrainConfig, saved, from_file, flags, source="fit")


def _print_epoch(row: dict, split: str = "test") -> None:
    names = ("ce", "aux_ce", "distill", "tying", "companion")
    terms = "".join(f"{k} {row[k]:.4f}  " for k in names if k in row)
    print(f"epoch {row['epoch']:>3}  lr {row['lr']:.4g}  stage {row['stage']}  loss {row['loss']:.4f}  "
          f"{terms}"
          f"train {row['train_acc']:5.1f}%  {split} {row['test_acc']:5.1f}%  {row['seconds']:.1f}s",
          flush=True)


def _run_fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from auxtrain.training import NonFiniteLossError, fit

    try:
        config = _fit_config(args)
        split = "val" if config.val_size else "test"
        result = fit(config, on_epoch=lambda row: _print_epoch(row, split))
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    except NonFiniteLossError as exc:
        print(f"auxtrain: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        out = getattr(args, "out", None) or "RUN_DIR"
        print(f"auxtrain: interrupted; the checkpoint is saved, continue with: "
              f"auxtrain fit --resume --out {out}", file=sys.stderr)
        return 130
    if result.run_dir is None:  # a non-zero rank of a distributed run: rank 0 reports
        return 0
    print(f"\nrun directory: {result.run_dir}\nplain model:   {result.model_path}\n"
          f"clean {'validation' if config.val_size else 'test'} accuracy: {result.test_acc:.2f}%  "
          f"({result.seconds:.0f} s)")
    report_md = Path(result.run_dir) / "report.md"
    if result.report is not None and report_md.is_file():
        print("\n" + report_md.read_text(encoding="utf-8"))
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="measure corruption errors and mCE of a model on a -C dataset",
        description="Evaluate corruption errors and mCE of an exported model.",
        epilog=EPILOG_EVAL, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("model and data")
    g.add_argument("--checkpoint", required=True, metavar="FILE", help="exported model (model_plain.pt)")
    g.add_argument("--data-root", metavar="DIR", help="the -C folder (with --generate: the clean dataset's)")
    g.add_argument("--clean-root", metavar="PATH",
                   help="clean test set: a .npy of uint8 (N, H, W, 3) images, a class/image folder, or "
                        "the dataset folder of --clean-dataset (default: DIR/clean.npy if present)")
    g.add_argument("--clean-dataset", metavar="NAME", help="read the clean test split of cifar10, cifar100 "
                   "or shapes (from --clean-root)")
    g.add_argument("--generate", action="store_true",
                   help="generate the corrupted set from --dataset's test split (cached in "
                        "OUT/corrupted_test)")
    g.add_argument("--dataset", metavar="NAME", help="with --generate: shapes, cifar10 or cifar100")
    g.add_argument("--test-size", type=int, metavar="N", help="with --generate: use the first N test images")
    g.add_argument("--seed", type=int, default=0, help="with --generate: corruption seed (default: 0)")
    g = p.add_argument_group("evaluation")
    g.add_argument("--corruptions", default=None, metavar="SUBSET",
                   help="names or families, comma-separated, or all/common/extra (default: every file found)")
    g.add_argument("--severities", default=None, metavar="S", help="e.g. 1-5, 3 or 1,3,5 (default: all)")
    g.add_argument("--baseline", metavar="DIR_OR_CSV",
                   help="another model's report folder or errors.csv: adds normalised and relative mCE")
    g.add_argument("--batch-size", type=int, default=256, metavar="N", help="images per batch (default: 256)")
    g.add_argument("--device", default="auto", metavar="DEV",
                   help="auto, cpu, cuda or cuda:N (default: auto)")
    g.add_argument("--out", required=True, metavar="DIR", help="report folder (created if missing)")
    g.add_argument("--title", default=None, help="report title (default: the checkpoint path)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bar (default: on)")
    p.set_defaults(run=_run_eval)


def _eval_clean_split(name: str, root: str | None, seed: int, size: int | None):
    """(uint8 images (N, 3, H, W), labels, spec) of a dataset's test split, first ``size`` images."""
    from auxtrain.data import build_datasets

    if name not in ("shapes", "cifar10", "cifar100"):
        raise ValueError(f"dataset {name!r} is not supported here; use shapes, cifar10 or cifar100")
    # shapes is generated: build only what is needed (its test split does not depend on train_size).
    kw = {"train_size": 16, **({"test_size": size} if size else {})} if name == "shapes" else {}
    _, test_ds, spec = build_datasets(name, root=root, seed=seed, **kw)
    n = len(test_ds) if size is None else min(size, len(test_ds))
    images, labels = test_ds.get_batch(list(range(n)))
    return images, labels.numpy(), spec


def _run_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from auxtrain import evaluation
    from auxtrain.distributed import resolve_device
    from auxtrain.export import load_model
    from auxtrain.report import read_errors, summary_table

    try:
        if args.generate and not args.dataset:
            raise ValueError("--generate needs --dataset (shapes, cifar10 or cifar100)")
        if not args.generate and not args.data_root:
            raise ValueError("--data-root DIR (the -C folder) is required; or use --generate --dataset NAME")
        if args.clean_dataset and args.generate:
            raise ValueError("--clean-dataset is implied by --generate --dataset; drop one of them")
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file; pass a folder")
        baseline = read_errors(args.baseline) if args.baseline else None  # fail before the long part
        device = resolve_device(args.device)
        model = load_model(args.checkpoint, device=device)
        clean = args.clean_root
        root = args.data_root
        if args.generate or args.clean_dataset:
            name = args.dataset if args.generate else args.clean_dataset
            data_root = args.data_root if args.generate else args.clean_root
            images, labels, spec = _eval_clean_split(name, data_root, args.seed,
                                                     args.test_size if args.generate else None)
            if spec.num_classes != model.meta["num_classes"]:
                raise ValueError(f"{args.checkpoint} predicts {model.meta['num_classes']} classes but {name} "
                                 f"has {spec.num_classes}; evaluate on the dataset the model was trained on")
            clean = (images, labels)
            if args.generate:
                root = evaluation.generate_corrupted_testset(
                    images, labels, out / "corrupted_test", names=args.corruptions,
                    severities=args.severities or "1-5", seed=args.seed, device=device,
                    progress=args.progress)
        errors = evaluation.corruption_errors(
            model, root, corruptions=args.corruptions, severities=args.severities, batch_size=args.batch_size,
            device=device, clean=clean, progress=args.progress)
        summary = evaluation.write_report(errors, out, baseline=baseline,
                                          seen=evaluation.seen_corruptions(model.meta),
                                          title=args.title or f"Corruption robustness of {args.checkpoint}")
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    print(summary_table(summary))
    if errors.attrs.get("missing"):
        print(f"\nnot in {root}: {', '.join(errors.attrs['missing'])}")
    print(f"\nreport written to {out}/ (errors.csv, accuracy.csv, report.csv, summary.json, report.md"
          f"{', report.png' if (out / 'report.png').is_file() else ''})")
    return 0


def _add_make_c(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-c", help="generate a CIFAR-C style corrupted test set (NAME.npy + labels.npy)",
        description="Generate a corrupted test set in the CIFAR-C layout from a dataset's test split.",
        epilog=EPILOG_MAKE_C, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("data")
    g.add_argument("--dataset", required=True, choices=("cifar10", "cifar100", "shapes"),
                   help="whose test split to corrupt")
    g.add_argument("--data-root", metavar="DIR",
                   help="folder holding cifar-10-batches-py/ or cifar-100-python/ (not needed for shapes)")
    g.add_argument("--test-size", type=int, metavar="N",
                   help="use the first N test images (default: all; shapes: 2,000)")
    g.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    g = p.add_argument_group("corruptions")
    g.add_argument("--corruptions", default="all", metavar="LIST",
                   help="comma-separated names or subsets: all, common, extra, noise, blur, weather, "
                        "digital (default: all)")
    g.add_argument("--severities", default="1-5", metavar="S", help="e.g. 1-5, 3 or 1,3,5 (default: 1-5)")
    g.add_argument("--seed", type=int, default=0, help="corruption seed (default: 0)")
    g.add_argument("--profile", default="auto", choices=("auto", "cifar", "imagenet"),
                   help="severity tables: auto picks by image size (default: auto)")
    g = p.add_argument_group("execution")
    g.add_argument("--device", default="auto", metavar="DEV",
                   help="auto, cpu, cuda or cuda:N (default: auto)")
    g.add_argument("--batch-size", type=int, default=1000, metavar="N",
                   help="images corrupted per call (default: 1000; part of the seed: keep it to resume)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bar (default: on)")
    p.set_defaults(run=_run_make_c)


def _run_make_c(args: argparse.Namespace) -> int:
    from auxtrain.data import build_datasets
    from corruptions import make_c, parse_severities, resolve_names

    try:
        names = resolve_names(args.corruptions, what="--corruptions")
        severities = parse_severities(args.severities, what="--severities")
        if args.test_size is not None and args.test_size < 1:
            raise ValueError(f"--test-size {args.test_size} must be a positive number of images")
        if args.dataset == "shapes":  # generated: build only the test split that is needed
            kw = {"train_size": 16, "test_size": args.test_size or 2000}
            _, test_ds, _ = build_datasets("shapes", seed=args.seed, **kw)
        else:
            _, test_ds, _ = build_datasets(args.dataset, root=args.data_root)
        n = len(test_ds.labels) if args.test_size is None else min(args.test_size, len(test_ds.labels))
        device = args.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        out = make_c(test_ds.images[:n], test_ds.labels[:n], args.out, names=names, severities=severities,
                     seed=args.seed, device=device, batch_size=args.batch_size, profile=args.profile,
                     progress=args.progress)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {len(names)} corruption files of {n * len(severities)} images "
          f"(severities {','.join(map(str, severities))}) and labels.npy to {out}/")
    return 0


def _add_list_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list-models", help="print the registered backbone names",
                       description="Print the names accepted by --model, one per line.",
                       epilog="example:\n  auxtrain list-models 'resnet*'",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pattern", nargs="?", default=None, help="wildcard filter, e.g. 'resnet*'")
    p.set_defaults(run=_run_list_models)


def _run_list_models(args: argparse.Namespace) -> int:
    from auxtrain.models import list_models

    names = list_models(args.pattern)
    if not names:
        raise UserError(f"no model matches {args.pattern!r}; run `auxtrain list-models` for all names")
    print("\n".join(names))
    return 0


def _add_list_corruptions(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list-corruptions", help="print the corruption names by family",
                       description="Print the corruption names accepted by --corruptions, by family.",
                       epilog="example:\n  auxtrain list-corruptions",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(run=_run_list_corruptions)


def _run_list_corruptions(args: argparse.Namespace) -> int:
    from corruptions import family_of, get_corruption_names

    families: dict[str, list[str]] = {}
    for name in get_corruption_names("all"):
        families.setdefault(family_of(name), []).append(name)
    for family, names in families.items():
        print(f"{family:8s} {', '.join(names)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auxtrain",
        description="Train and evaluate image classifiers that stay accurate under corruptions.",
    )
    from auxtrain import __version__

    parser.add_argument("--version", action="version", version=f"auxtrain {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_fit(sub)
    _add_eval(sub)
    _add_make_c(sub)
    _add_list_models(sub)
    _add_list_corruptions(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: sys.argv[1:]) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return int(exc.code or 0)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    try:
        return int(args.run(args) or 0)
    except UserError as exc:
        print(f"auxtrain: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("auxtrain: interrupted", file=sys.stderr)
        return 130


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())
