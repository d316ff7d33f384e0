"""How long does the shapes recipe sit at chance, and does an optimiser setting shorten it?

Every shapes run starts at chance for 2-5 epochs (ablations_round2_shapes.md), and when it leaves
that plateau decides most of its final error. This screen trains the shapes defaults with one
change per variant (standard training by default: it shows the same plateau at a third of the
cost), stops each run once its test accuracy passes --threshold or after --max-epochs, and
reports the per-epoch test accuracy and the first epoch above the threshold. The schedule is the
full 12-epoch one in every run (a stopped run is the start of a full run, not a shorter one).

    python benchmarks/robustness/shapes_plateau.py --out runs/plateau --seeds 0,1,2 \\
        --variants defaults,warmup3,lr0.05,batch64
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: scripts, not a package
from _machine import header_lines, load_average, write_result  # noqa: E402

VARIANTS = {
    "defaults": [],
    "warmup3": ["--warmup-epochs", "3"],
    "lr0.05": ["--lr", "0.05"],
    "lr0.02": ["--lr", "0.02"],
    "batch64": ["--batch-size", "64"],
    "zero_init": ["--model-kwargs", "zero_init_residual=True"],
    "lr0.2": ["--lr", "0.2"],
    "wd5e-5": ["--weight-decay", "5e-5"],
    "companions": ["--companions", "layer1,layer2", "--companion-threshold", "0.5", "--no-companion-decay"],
}


def screen(name: str, seed: int, args: argparse.Namespace) -> dict:
    """One run, stopped at the threshold or after --max-epochs; its per-epoch test accuracies."""
    run_dir = args.out / f"{name}-seed{seed}"
    cmd = [sys.executable, "-m", "auxtrain", "fit", "--dataset", "shapes", *args.base.split(),
           *VARIANTS[name], "--seed", str(seed), "--out", str(run_dir), "--overwrite", "--no-progress",
           "--no-eval"]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    start, accs = time.time(), []
    with (args.out / f"{name}-seed{seed}.log").open("w") as log:
        process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        while process.poll() is None:
            time.sleep(2)
            if (run_dir / "metrics.csv").exists():
                accs = pd.read_csv(run_dir / "metrics.csv")["test_acc"].tolist()
                if accs and (accs[-1] > args.threshold or len(accs) >= args.max_epochs):
                    process.terminate()
                    process.wait()
        if process.returncode not in (0, -15):
            raise RuntimeError(f"{name} seed {seed} failed (exit {process.returncode}); see its log")
    first = next((i + 1 for i, acc in enumerate(accs) if acc > args.threshold), None)
    print(f"{name} seed {seed}: test accuracy {accs}, first epoch above {args.threshold}%: {first}",
          flush=True)
    return {"variant": name, "seed": seed, "test accuracy per epoch (%)": " ".join(f"{a:.1f}" for a in accs),
            f"first epoch > {args.threshold:g}%": first or f"> {len(accs)}", "wall (s)": time.time() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/plateau"))
    parser.add_argument("--variants", default="defaults", help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--base", default="--corruptions none", help="fit options shared by every variant")
    parser.add_argument("--threshold", type=float, default=30.0,
                        help="test accuracy (%%) that ends the plateau")
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--result", type=Path, default=Path("benchmarks/results/shapes_plateau.md"))
    args = parser.parse_args()
    unknown = sorted(set(args.variants.split(",")) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = load_average()
    rows = [screen(name, int(seed), args)
            for name in args.variants.split(",") for seed in args.seeds.split(",")]
    table = pd.DataFrame(rows)
    table["wall (s)"] = table["wall (s)"].round(0).astype(int)
    lines = [*header_lines(__file__, load_before=load_before), "",
             f"Setting: the shapes defaults of `fit` plus `{args.base}` and the variant's options; each run "
             f"stopped once test accuracy passed {args.threshold:g}% or after {args.max_epochs} epochs "
             "(the schedule of the full --epochs).", "",
             "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns),
             *("| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)), ""]
    write_result(args.result, lines)


if __name__ == "__main__":
    main()
