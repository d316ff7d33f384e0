"""Ablations of auxiliary training on the offline shapes dataset, with mean and spread over seeds.

Claim checked: each part of the method earns its place: with everything else fixed, removing or
changing one part (selective BN, distillation, stage-two weight tying, the copy head, one branch
per corruption family) raises the corruption error (mCE) over the full method on the same seeds.

Every variant trains the same backbone with the same corruptions (noise and blur families), epochs
and seeds, changing one thing; all are evaluated on one shapes-C set made by `auxtrain make-c`:
  full              the method: selective BN, copy heads, distillation, stage-two weight tying (K = 2)
  no_selective_bn   plain BatchNorm2d shared by the stacked views
  no_distillation   beta = 0
  no_tying          gamma = 0 (no stage-two weight tying)
  attention_head    the authors' attention + bottleneck auxiliary head instead of a copy
  k1                one branch holding all seven noise and blur corruptions
  k4                the same seven corruptions split into four branches
  standard, augment the two baselines (no corruption; corrupted copies in the main batch)

    python benchmarks/robustness/ablations_shapes.py --out runs/ablations --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from cifar10 import markdown_table, noise_blur_split, run_fit, seed_summary, summary_value  # same folder

from auxtrain.run_dir import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: scripts, not a package
from _machine import header_lines, load_average  # noqa: E402

VARIANTS = {
    "full": ["--corruptions", "noise,blur"],
    "no_selective_bn": ["--corruptions", "noise,blur", "--no-selective-bn"],
    "no_distillation": ["--corruptions", "noise,blur", "--beta", "0"],
    "no_tying": ["--corruptions", "noise,blur", "--gamma", "0"],
    "attention_head": ["--corruptions", "noise,blur", "--head", "attention"],
    "k1": ["--corruptions", "noise+blur"],
    "k4": ["--corruptions", "gaussian_noise+shot_noise,impulse_noise,defocus_blur+glass_blur,"
           "motion_blur+zoom_blur"],
    "standard": ["--corruptions", "none"],
    "augment": ["--mode", "augment", "--corruptions", "noise,blur"],
}


def paired_with(per_run: pd.DataFrame, reference: str = "full",
                columns: tuple[str, ...] = ("clean error", "mCE")) -> pd.DataFrame:
    """Each variant minus ``reference`` on the same seed (same data, same initialisation).

    Seed-to-seed spread on shapes is large (the learning curve has a plateau some seeds leave late),
    so the paired difference and how many seeds favour each side say more than two overlapping
    mean ± std cells.
    """
    ref = per_run[per_run["variant"] == reference].set_index("seed")
    rows = []
    for variant, group in per_run[per_run["variant"] != reference].groupby("variant", sort=False):
        diff = group.set_index("seed")[list(columns)] - ref[list(columns)]
        diff = diff.dropna()
        if diff.empty:
            continue
        row = {"variant": variant, "seeds": len(diff)}
        for col in columns:
            d = diff[col]
            spread = f" ± {d.std():.2f}" if len(d) > 1 else ""
            row[f"{col} - {reference}"] = f"{d.mean():+.2f}{spread}"
            row[f"seeds {reference} lower ({col})"] = f"{int((d > 0).sum())} of {len(d)}"
        rows.append(row)
    return pd.DataFrame(rows)


def shapes_c(out: Path, eval_size: int) -> Path:
    """``out/shapes-C``: the shapes-C set every variant is evaluated on (made once, reused)."""
    c_dir = out / "shapes-C"
    if not (c_dir / "labels.npy").exists():
        subprocess.run([sys.executable, "-m", "auxtrain", "make-c", "--dataset", "shapes", "--test-size",
                        str(eval_size), "--out", str(c_dir), "--no-progress"], check=True)
    return c_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/ablations"))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--test-size", type=int, default=500)
    parser.add_argument("--eval-size", type=int, default=200, help="test images in the shapes-C set")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--result", type=Path, default=Path("benchmarks/results/ablations_shapes.md"))
    args = parser.parse_args()
    load_before = load_average()
    args.out.mkdir(parents=True, exist_ok=True)
    c_dir = shapes_c(args.out, args.eval_size)
    common = ["--dataset", "shapes", "--model", args.model, "--epochs", str(args.epochs),
              "--train-size", str(args.train_size), "--test-size", str(args.test_size)]
    jobs = [(v, s) for s in map(int, args.seeds.split(",")) for v in args.variants.split(",")]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda job: run_fit(job[0], args, c_dir, job[1], [*common, *VARIANTS[job[0]]]), jobs))
    # Report every finished run in --out (earlier invocations included), in variant then seed order.
    done = sorted(((v, int(p.parent.name.rsplit("-seed", 1)[1])) for v in VARIANTS
                   for p in args.out.glob(f"{v}-seed*/summary.json")),
                  key=lambda job: (list(VARIANTS).index(job[0]), job[1]))
    results = [run_fit(v, args, c_dir, seed, [*common, *VARIANTS[v]]) for v, seed in done]
    rows = [{"variant": r["method"], "seed": r["seed"], "clean error": r["clean_error"],
             "mCE": summary_value(r["summary"]),
             **noise_blur_split(r["errors"]),
             "minutes": r["train_seconds"] / 60}
            for r in results]
    per_run = pd.DataFrame(rows)
    summary = seed_summary(per_run, by="variant")
    text = "\n".join([
        "# Ablations on the shapes dataset", "",
        *header_lines(__file__, device="auto", load_before=load_before), "",
        f"Setting: {args.model}, {args.epochs} epochs, {args.train_size} training / {args.test_size} test "
        "shapes images, batch 128, the shapes defaults of `fit` (SGD, cosine schedule with one "
        "warm-up epoch), alpha = beta = 0.05, T = 1, gamma = 1 unless the "
        f"variant changes it; shapes-C = all 19 corruptions x 5 severities of {args.eval_size} test images "
        f"(`auxtrain make-c --dataset shapes`, seed 0). Seeds {args.seeds}; errors in percent, "
        "mean ± standard deviation over the seeds (lower is better). "
        "Noise+blur mean = the seven noise and blur corruptions every auxiliary variant trains on; "
        "other mean = the remaining twelve (unseen by every variant).", "",
        "## Mean ± std over seeds (a single value where only one seed ran)", "",
        markdown_table(summary, index=True), "",
        "## Paired with the full method (variant minus full on the same seed; positive = full is better)", "",
        markdown_table(paired_with(per_run)), "",
        "## Every run", "", markdown_table(per_run), "",
        "Per-run commands are in each run directory's config.yaml.", ""])
    atomic_write_text(args.result, text)
    print(text)


if __name__ == "__main__":
    main()
