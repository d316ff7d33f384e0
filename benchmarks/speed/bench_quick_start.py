"""Wall time and clean error of the README's quick start, over seeds.

Claim checked (issue 16): ``auxtrain fit --dataset shapes --corruptions noise,blur`` finishes in at
most 3 minutes on 2 cores, with a clean error no worse than before (18.3% on seed 0 at 6 min 10 s
before the faster step). Each seed runs the quick-start command as a user types it (a fresh
process, the default options, the robustness report included) one after the other, never two at
once, and the wall time of the whole command is measured; the load average is recorded around
each run, since a shared machine makes wall times unreliable.

    python benchmarks/speed/bench_quick_start.py                 # seeds 0,1,2 (about 20 minutes quiet)
    python benchmarks/speed/bench_quick_start.py --seeds 0       # one run
    git worktree add ../before OLD && python benchmarks/speed/bench_quick_start.py --seeds 0 \
        --code ../before --out before.md                         # the same run with OLD's auxtrain

Writes benchmarks/results/quick_start.md (the header of benchmarks/_machine.py, then one row per
seed and the mean). The run directories go to --runs (default runs/quick_start_bench/seed<S>) and
are replaced when they exist.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: scripts, not a package
from _machine import REPO, format_load, header_lines, load_average, write_result  # noqa: E402

COMMAND = ["-m", "auxtrain", "fit", "--dataset", "shapes", "--corruptions", "noise,blur", "--no-progress"]
TARGET_SECONDS = 180


def run_seed(seed: int, out: Path, extra: list[str], code: Path = REPO) -> dict:
    """One quick-start run in a fresh process: wall time, training time, clean error, load around it.

    ``code`` is the checkout whose ``auxtrain`` runs (``python -m`` imports it from the working
    directory first), e.g. a worktree of an older commit for a before/after on the same machine.
    """
    load_before = load_average()
    start = time.perf_counter()
    command = [sys.executable, *COMMAND, "--seed", str(seed), "--out", str(out), "--overwrite", *extra]
    subprocess.run(command, check=True, cwd=code, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(out / "config.yaml", encoding="utf-8") as f:  # the commit the run itself recorded
        ran = (yaml.safe_load(f).get("environment") or {}).get("git_commit") or "unknown"
    short = ran[:7] + ("-dirty" if ran.endswith("-dirty") else "")
    return {"seed": seed, "wall": wall, "train": sum(float(r["seconds"]) for r in rows),
            "epochs": len(rows), "commit": short, "clean_error": 100 - float(rows[-1]["test_acc"]),
            "load": f"{format_load(load_before)} / {format_load(load_average())}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "quick_start_bench",
                        help="folder of the run directories")
    parser.add_argument("--extra", default="", help="extra fit flags, e.g. '--domain-passes stacked'")
    parser.add_argument("--code", type=Path, default=REPO,
                        help="checkout whose auxtrain runs (default: this one), e.g. an old worktree")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "quick_start.md",
                        help="Markdown result file")
    args = parser.parse_args(argv)
    load_before = load_average()
    results = []
    runs, code = args.runs.resolve(), args.code.resolve()  # the runs start in `code`, not here
    for seed in map(int, args.seeds.split(",")):
        results.append(run_seed(seed, runs / f"seed{seed}", args.extra.split(), code))
        r = results[-1]
        print(f"seed {seed}: {r['wall']:.0f} s wall, {r['train']:.0f} s training, clean error "
              f"{r['clean_error']:.2f}%, load {r['load']}", flush=True)
    lines = [
        "# Quick start: wall time and clean error", "",
        *header_lines(__file__, argv, "auto", load_before, load_average()),
        f"- code: commit {', '.join(sorted({r['commit'] for r in results}))} ({code}), "
        "as each run's config.yaml records it",
        f"- Each seed: `python {' '.join([*COMMAND, '--seed', 'S', '--out', 'DIR', *args.extra.split()])}`",
        f"- Target: at most {TARGET_SECONDS} s wall per run on 2 cores, clean error no worse than 18.3% "
        "(seed 0 before the faster step, 6 min 10 s)", "",
        "| seed | wall (s) | training (s) | epochs | clean error (%) | load before / after |",
        "|---:|---:|---:|---:|---:|---|",
        *(f"| {r['seed']} | {r['wall']:.0f} | {r['train']:.0f} | {r['epochs']} | {r['clean_error']:.2f} "
          f"| {r['load']} |" for r in results),
    ]
    if len(results) > 1:
        walls, errors = [r["wall"] for r in results], [r["clean_error"] for r in results]
        lines.append(f"| mean ± std | {statistics.mean(walls):.0f} ± {statistics.stdev(walls):.0f} | | "
                     f"| {statistics.mean(errors):.2f} ± {statistics.stdev(errors):.2f} | |")
    lines.append("")
    write_result(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
