"""Command-line interface: argument parsing only; every command calls the library.

Each subcommand has an ``_add_<command>`` function that declares its flags and a ``_run_<command>``
function that turns the parsed flags into one library call and returns an exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
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
Writes OUT/errors.csv, accuracy.csv, unaggregated_results.csv (RobustBench's layout), report.csv,
summary.json, report.md and report.png.
"""
EPILOG_MAKE_C = """example:
  auxtrain make-c --dataset cifar100 --data-root data --out data/CIFAR-100-C
  auxtrain make-c --dataset cifar10 --data-root data --out data/CIFAR-10-C --device cuda
  auxtrain make-c --dataset shapes --out data/shapes-C --corruptions noise,fog --severities 1,3,5
  torchrun --nproc-per-node 4 -m auxtrain make-c --dataset cifar10 --data-root data --out data/C10-C

Writes OUT/NAME.npy ((N * S), H, W, 3) uint8, the test images at each severity in turn) and
OUT/labels.npy, as CIFAR-10-C, and OUT/clean.npy (the N clean images, for the clean error). Each file
appears only when complete: rerun the same command after an interruption and finished files are
verified (sha256) and skipped (OUT/make_c.json pins the settings and the checksums). Under torchrun
the processes share the work (OUT must be one shared folder); the bytes are those of one process.
RobustBench's CIFAR-C loader needs N = 10,000 and severities 1-5 (a warning says so otherwise).
"""


class UserError(Exception):
    """A problem with the user's input: printed without a traceback, exit code 2."""


def _add_fit(sub: argparse._SubParsersAction) -> None:
    from auxtrain.train_config import TrainConfig

    p = sub.add_parser(
        "fit", help="train a robust classifier (auxiliary training) and export a plain model",
        description="Train a classifier with auxiliary training and export a plain model.\n"
                    "Options come from the defaults, then (with --resume) the run's own options, then "
                    "-c/--config FILE (YAML or TOML, same names), then the flags.",
        epilog=EPILOG_FIT, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_flags(p, TrainConfig)  # one flag per TrainConfig field, its help in the field
    p.set_defaults(run=_run_fit)


def _fit_config(args: argparse.Namespace):
    """TrainConfig from defaults < the resumed run's config < -c FILE < flags."""
    from auxtrain.config import config_from_args
    from auxtrain.resume_options import saved_run_options
    from auxtrain.train_config import TrainConfig

    def resumed(options: dict) -> dict:  # --resume --out DIR is enough: the run's own options
        return saved_run_options(options["out"]) if options.get("resume") and options.get("out") else {}

    return config_from_args(TrainConfig, args, base=resumed, source="fit")


def _print_epoch(row: dict, split: str = "test") -> None:
    from auxtrain.losses import LOSS_TERMS  # here, not at the top: `auxtrain --help` imports no torch

    terms = "".join(f"{k} {row[k]:.4f}  " for k in LOSS_TERMS if k in row)
    print(f"epoch {row['epoch']:>3}  lr {row['lr']:.4g}  stage {row['stage']}  loss {row['loss']:.4f}  "
          f"{terms}"
          f"train {row['train_acc']:5.1f}%  {split} {row['test_acc']:5.1f}%  {row['seconds']:.1f}s",
          flush=True)


def _run_fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from auxtrain.training import NonFiniteLossError, fit

    config = None
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
        print(_interrupted_message(config.out if config is not None else getattr(args, "out", None)),
              file=sys.stderr)
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


def _interrupted_message(out: str | None) -> str:
    """What a Ctrl-C of ``fit`` left in ``out`` and the command to type next; names only files that exist."""
    from pathlib import Path

    from auxtrain.run_dir import RunDir

    if out is not None and (Path(out) / RunDir.CHECKPOINT).is_file():
        return (f"auxtrain: interrupted; the checkpoint {Path(out) / RunDir.CHECKPOINT} is saved, continue "
                f"with: auxtrain fit --resume --out {out}")
    if out is not None and (Path(out) / RunDir.CONFIG).is_file():
        return (f"auxtrain: interrupted before the first checkpoint, so there is nothing to resume; start "
                f"again with the same options and --overwrite --out {out}")
    return "auxtrain: interrupted before anything was written; run the same command again"


def _add_config_flags(p: argparse.ArgumentParser, cls) -> None:
    """``-c/--config FILE`` and one flag per field of the config dataclass ``cls``."""
    from auxtrain._flags import add_dataclass_arguments
    from auxtrain.config import add_config_file_argument

    add_config_file_argument(p)
    add_dataclass_arguments(p, cls)


def _config_from(cls, args: argparse.Namespace, command: str):
    """``cls`` from its defaults < the ``-c`` file < the flags given."""
    from auxtrain.config import config_from_args

    return config_from_args(cls, args, source=command)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from auxtrain.eval_config import EvalConfig

    p = sub.add_parser(
        "eval", help="measure corruption errors and mCE of a model on a -C dataset",
        description="Evaluate corruption errors and mCE of an exported model.\n"
                    "Options come from the defaults, then -c/--config FILE (YAML or TOML, same names), "
                    "then the flags.",
        epilog=EPILOG_EVAL, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_flags(p, EvalConfig)
    p.set_defaults(run=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from auxtrain.eval_config import EvalConfig
    from auxtrain.evaluation import run_eval
    from auxtrain.report import summary_table

    try:
        result = run_eval(_config_from(EvalConfig, args, "eval"))
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    out = result.out_dir
    if out is None:  # a rank > 0 under torchrun: rank 0 writes and prints the report
        return 0
    print(summary_table(result.summary))
    if result.errors.attrs.get("missing"):
        print(f"\nnot in {result.root}: {', '.join(result.errors.attrs['missing'])}")
    print(f"\nreport written to {out}/ (errors.csv, accuracy.csv, unaggregated_results.csv, report.csv, "
          f"summary.json, report.md"
          f"{', errors_bn_adapted.csv' if result.errors_bn_adapted is not None else ''}"
          f"{', report.png' if (out / 'report.png').is_file() else ''})")
    return 0


def _add_make_c(sub: argparse._SubParsersAction) -> None:
    from auxtrain.eval_config import MakeCConfig

    p = sub.add_parser(
        "make-c", help="generate a CIFAR-C style corrupted test set (NAME.npy + labels.npy)",
        description="Generate a corrupted test set in the CIFAR-C layout from a dataset's test split.\n"
                    "Options come from the defaults, then -c/--config FILE (YAML or TOML, same names), "
                    "then the flags.",
        epilog=EPILOG_MAKE_C, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_flags(p, MakeCConfig)
    p.set_defaults(run=_run_make_c)


def _run_make_c(args: argparse.Namespace) -> int:
    import warnings

    from auxtrain.eval_config import MakeCConfig
    from auxtrain.make_c_command import make_c_from_dataset

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            result = make_c_from_dataset(_config_from(MakeCConfig, args, "make-c"))
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
        raise UserError(str(exc)) from None
    for warning in caught:  # e.g. the set is smaller than RobustBench's loader needs
        print(f"auxtrain: warning: {warning.message}", file=sys.stderr)
    if not result.is_main:  # a rank > 0 under torchrun: rank 0 reports
        return 0
    images = result.num_images * len(result.severities)
    print(f"wrote {len(result.names)} corruption files of {images} images "
          f"(severities {','.join(map(str, result.severities))}), labels.npy and clean.npy to "
          f"{result.out_dir}/")
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
    parser.add_argument("--debug", action="store_true",
                        help=f"print the Python traceback of an error too (or set {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_fit(sub)
    _add_eval(sub)
    _add_make_c(sub)
    _add_list_models(sub)
    _add_list_corruptions(sub)
    return parser


# Exit code when stdout is closed before a command that is not a listing finished: 128 + SIGPIPE,
# as a shell reports a process killed by a broken pipe.
EXIT_BROKEN_PIPE = 141


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises no second BrokenPipeError."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture): nothing to flush
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: sys.argv[1:]) and return the exit code.

    A reader that closes stdout early (``auxtrain list-models | head``) ends the command quietly,
    without a traceback: with exit code 0 for help and the listings (the reader took what it
    wanted), with 141 (``EXIT_BROKEN_PIPE``) and a one-line note on stderr for the other commands,
    which did not finish (a ``fit`` keeps its last epoch checkpoint, for ``--resume``).

    Every command runs inside one error boundary: an expected failure (an :mod:`auxtrain.errors`
    type, which names the file or flag, or any OSError: a full, read-only or missing disk or file)
    prints ``auxtrain: error: <message>`` and returns 2; anything else is a bug and keeps its
    traceback (exit code 1). ``--debug`` or ``AUXTRAIN_DEBUG=1`` prints the traceback of every error.
    """
    parser = build_parser()
    command: list = []  # the parsed command's run function: a broken pipe's exit code depends on it
    try:
        return _main(parser, argv, command)
    except BrokenPipeError:
        _silence_stdout()
        if not command or command[0] in (_run_list_models, _run_list_corruptions):
            return 0
        print("auxtrain: stopped: stdout was closed (broken pipe) before the command finished",
              file=sys.stderr)
        return EXIT_BROKEN_PIPE


def _main(parser: argparse.ArgumentParser, argv: Sequence[str] | None, command: list) -> int:
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return int(exc.code or 0)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    command.append(args.run)
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("auxtrain: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise  # main() decides: quiet for the listings, 141 otherwise
    except Exception as exc:  # the error boundary: one line for expected failures, a traceback for bugs
        message = _expected_failure(exc)
        if message is None:
            traceback.print_exc()
            print(f"auxtrain: internal error ({type(exc).__name__}): this is a bug in auxtrain; please "
                  "report it with the traceback above", file=sys.stderr)
            return 1
        if debug:  # the error a UserError was raised from, when there is one
            cause = (exc.__cause__ or exc.__context__) if isinstance(exc, UserError) else None
            traceback.print_exception(cause or exc)
        print(f"auxtrain: error: {message}", file=sys.stderr)
        return 2


# Set to 1 for the traceback of every error (as the top-level --debug flag does).
DEBUG_ENV = "AUXTRAIN_DEBUG"


def _expected_failure(exc: BaseException) -> str | None:
    """The one-line message of an expected failure (bad input, file, disk or environment), None for a bug.

    Readers raise :mod:`auxtrain.errors` types that name the file; any other OSError (a read-only or
    full disk, a path under a file, an unreadable file) is described from its errno and file name.
    """
    from auxtrain.errors import AuxtrainError, clean_worker_message, describe_os_error

    if isinstance(exc, (UserError, AuxtrainError)):
        return clean_worker_message(str(exc))
    if isinstance(exc, OSError):
        if exc.filename:
            return describe_os_error(exc)
        return clean_worker_message(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":  # torch's CUDA OOM
        return ("out of memory; pass a smaller --batch-size (or fewer --workers), or use a machine with more "
                "memory")
    return None


def main_exit() -> None:
    """Console-script entry point (also ``python -m auxtrain``)."""
    # Machine tuning of the command-line process, set before torch is imported (later it would do
    # nothing); a value set by the user wins. OpenMP's default busy-waiting makes every
    # multi-threaded CPU op spin against any other load on the machine; passive waiting costs
    # little on an idle one. The library itself (import auxtrain) leaves the environment alone.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.exit(main())
