"""Shapes ablations of issue 17: stage-two strength under cosine, crop order, deep supervision.

Claims checked, each by a paired comparison on the same seeds (same data, same initialisation):
  stage two    the default (``--tying-scale step_lr``: lr x gamma matched to the step schedule's)
               against the old constant gamma under cosine (``tying_none``) and no tying (``no_tying``);
  crop order   the views corrupted before the crop (``--view-order corrupt_then_crop``, then cropped
               like the clean batch) against the default (the cropped batch corrupted);
  deep supervision (``--companions`` on resnet20's layer1 and layer2) with the DSN hinge (a constant
               weight, companions off below ``--hinge``) and with Wang et al.'s decaying weight,
               alone (paired with standard training) and with auxiliary training (paired with full).

Every variant: resnet20, the shapes defaults of `fit` (SGD, cosine, one warm-up epoch), evaluated on
one shapes-C set made by `auxtrain make-c`. Runs are resumable and skipped when finished.

    python benchmarks/robustness/ablations_round2.py --out runs/ablations2 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from ablations_shapes import paired_with, shapes_c  # same folder
from cifar10 import (
    add_records_argument,
    markdown_table,
    noise_blur_split,
    run_fit,
    seed_summary,
    summary_value,
)

from auxtrain.run_dir import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: scripts, not a package
from _machine import header_lines, load_average  # noqa: E402

STAGES = "layer1,layer2"


def variants(args: argparse.Namespace) -> dict[str, list[str]]:
    hinge = ["--companions", STAGES, "--companion-threshold", str(args.hinge), "--no-companion-decay"]
    decay = ["--companions", STAGES]
    found = {
        "full": ["--corruptions", "noise,blur"],
        "tying_none": ["--corruptions", "noise,blur", "--tying-scale", "none"],
        "no_tying": ["--corruptions", "noise,blur", "--gamma", "0"],
        "standard": ["--corruptions", "none"],
        "ds_hinge": ["--corruptions", "none", *hinge],
        "ds_decay": ["--corruptions", "none", *decay],
        "aux_ds_hinge": ["--corruptions", "noise,blur", *hinge],
        "aux_ds_decay": ["--corruptions", "noise,blur", *decay],
        "corrupt_first": ["--corruptions", "noise,blur", "--view-order", "corrupt_then_crop"],
    }
    return found


# (title, reference, variants compared with it)
GROUPS = [("Stage-two strength under cosine", "full", ("tying_none", "no_tying")),
          ("Crop order", "full", ("corrupt_first",)),
          ("Deep supervision alone", "standard", ("ds_hinge", "ds_decay")),
          ("Deep supervision with auxiliary training", "full", ("aux_ds_hinge", "aux_ds_decay"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/ablations2"))
    parser.add_argument("--variants", default=None, help="comma list (default: all)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--test-size", type=int, default=500)
    parser.add_argument("--eval-size", type=int, default=200, help="test images in the shapes-C set")
    parser.add_argument("--hinge", type=float, default=0.5, help="DSN threshold on a companion's CE")
    add_records_argument(parser)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--result", type=Path, default=Path("benchmarks/results/ablations_round2_shapes.md"))
    args = parser.parse_args()
    table = variants(args)
    chosen = args.variants.split(",") if args.variants else list(table)
    unknown = [v for v in chosen if v not in table]
    if unknown:
        parser.error(f"--variants: unknown {unknown}; choose from {', '.join(table)}")
    load_before = load_average()
    args.out.mkdir(parents=True, exist_ok=True)
    c_dir = shapes_c(args.out, args.eval_size)
    common = ["--dataset", "shapes", "--model", "resnet20", "--epochs", str(args.epochs),
              "--train-size", str(args.train_size), "--test-size", str(args.test_size)]
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(v, s) for s in seeds for v in chosen]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda j: run_fit(j[0], args, c_dir, j[1], [*common, *table[j[0]]],
                                                               args.records), jobs))
    per_run = pd.DataFrame([{"variant": r["method"], "seed": r["seed"], "clean error": r["clean_error"],
                             "mCE": summary_value(r["summary"]), **noise_blur_split(r["errors"]),
                             "minutes": r["train_seconds"] / 60} for r in results])
    sections = []
    for title, reference, group in GROUPS:
        subset = per_run[per_run["variant"].isin([reference, *group])]
        if reference in set(subset["variant"]) and len(set(subset["variant"])) > 1:
            sections += [f"## {title}: paired with {reference} (variant minus {reference}, same seed; "
                         f"positive = {reference} is better)", "",
                         markdown_table(paired_with(subset, reference)), ""]
    text = "\n".join([
        "# Shapes ablations, round two (issue 17)", "",
        *header_lines(__file__, device="auto", load_before=load_before), "",
        f"Setting: resnet20, {args.epochs} epochs, {args.train_size} training / {args.test_size} test shapes "
        "images, the shapes defaults of `fit`, alpha = beta = 0.05, T = 1, gamma = 1 unless the variant "
        f"changes it; companions on {STAGES} (weight 0.3; hinge {args.hinge}); shapes-C = 19 corruptions x "
        f"5 severities of {args.eval_size} test images. Seeds {args.seeds}; errors in percent.", "",
        *sections,
        "## Mean ± std over seeds", "", markdown_table(seed_summary(per_run, by="variant"), index=True), "",
        "## Every run", "", markdown_table(per_run), "",
        "Variants: " + "; ".join(f"{k}: `{' '.join(v)}`" for k, v in table.items() if k in chosen), "",
        "Per-run commands are in each run directory's config.yaml.", ""])
    atomic_write_text(args.result, text)
    print(text)


if __name__ == "__main__":
    main()
