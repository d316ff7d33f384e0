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
"""
EPILOG_EVAL = """example:
  auxtrain eval --checkpoint runs/shapes/model_plain.pt --data-root data/CIFAR-100-C --out reports/r18
"""
EPILOG_MAKE_C = """example:
  auxtrain make-c --dataset cifar100 --data-root data --out data/CIFAR-100-C
"""


class UserError(Exception):
    """A problem with the user's input: printed without a traceback, exit code 2."""


def _add_fit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit", help="train a robust classifier (auxiliary training) and export a plain model",
        description="Train a classifier with auxiliary training and export a plain model.",
        epilog=EPILOG_FIT, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(run=_run_fit)


def _run_fit(args: argparse.Namespace) -> int:
    raise UserError("`auxtrain fit` is not implemented yet")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="measure corruption errors and mCE of a model on a -C dataset",
        description="Evaluate corruption errors and mCE of an exported model.",
        epilog=EPILOG_EVAL, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(run=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    raise UserError("`auxtrain eval` is not implemented yet")


def _add_make_c(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-c", help="generate a CIFAR-C style corrupted test set (NAME.npy + labels.npy)",
        description="Generate a corrupted test set in the CIFAR-C layout.",
        epilog=EPILOG_MAKE_C, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(run=_run_make_c)


def _run_make_c(args: argparse.Namespace) -> int:
    raise UserError("`auxtrain make-c` is not implemented yet")


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
