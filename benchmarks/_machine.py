"""The header every benchmark result file starts with: when, how, on what, and how busy.

The benchmarks run on shared machines, so a result can only be read next to the command that made
it, the versions, device and threads it ran with, and the load the machine had; a speed benchmark
passes the load it saw before the measurement and after it. Scripts in sub-folders import this
module after putting benchmarks/ on sys.path (a folder of scripts, not a package). torch is imported
when the header is made, not here: some scripts set OMP_WAIT_POLICY before torch is first imported.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages, or None where the system does not keep them."""
    try:
        return os.getloadavg()
    except (AttributeError, OSError):
        return None


def format_load(load: tuple[float, ...] | None) -> str:
    return "n/a" if load is None else " / ".join(f"{v:.1f}" for v in load)


def command_line(script: str | Path, argv: list[str] | None = None) -> str:
    """The command to rerun from the repository root: ``python benchmarks/.../script.py ARGS``."""
    path = Path(script).resolve()
    shown = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)
    return shlex.join(["python", shown, *(sys.argv[1:] if argv is None else argv)])


def header_lines(script: str | Path, argv: list[str] | None = None, device: str = "cpu",
                 load_before: tuple[float, ...] | None = None,
                 load_after: tuple[float, ...] | None = None) -> list[str]:
    """Markdown bullet lines: date (UTC), command, versions, machine, device, threads, load average.

    ``device`` "auto" means cuda if available, as `auxtrain fit` picks it; ``load_before`` and
    ``load_after`` are ``load_average()`` triples taken around the measurement (after: now if None).
    """
    import numpy as np
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda"):
        device = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    try:
        import torchvision

        vision = torchvision.__version__
    except ImportError:
        vision = "not installed"
    load = f"{format_load(load_before)} before, " if load_before is not None else ""
    load += f"{format_load(load_after if load_after is not None else load_average())} after"
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `{command_line(script, argv)}`",
        f"- versions: Python {platform.python_version()}, torch {torch.__version__}, "
        f"torchvision {vision}, numpy {np.__version__}",
        f"- machine: {os.cpu_count()} CPUs, {platform.platform()}; device {device}; torch threads "
        f"{torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}",
        f"- load average (1 / 5 / 15 min): {load}",
    ]


def write_result(path: str | Path, lines: list[str]) -> str:
    """Print a result's Markdown ``lines`` and write them to ``path`` atomically; returns the text."""
    from auxtrain.run_dir import atomic_write_text

    text = "\n".join(lines) + "\n"
    print(text)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return text
