"""Is a model's corruption error partly a BatchNorm-statistics mismatch? A diagnostic.

An exported auxtrain model normalises every input with running statistics collected on clean data
(selective BN keeps the corrupted domains' statistics out of them); naive augmentation's model
collects them on a clean + corrupted mixture. This script evaluates each run's `model_plain.pt`
on one -C set twice: as exported (running statistics) and with every BatchNorm layer using the
statistics of the test batch itself (all images of a batch share one corruption and severity,
as in test-time BN adaptation, Schneider et al. 2020). If a method's error falls much more than
another's when BN sees the right statistics, its features handle the corruption but its running
statistics do not fit it.

    python benchmarks/bn_statistics.py --c-root runs/robustness/CIFAR-10-C --data-root ~/data \\
        --runs runs/robustness/standard-seed0,runs/robustness/auxiliary-seed0 --result bn.md
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from robustness import markdown_table, noise_blur_split, seed_summary  # same folder
from torch import nn

from auxtrain.data import build_datasets
from auxtrain.evaluation import corruption_errors, mce
from auxtrain.export import load_model


def with_batch_statistics(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose BatchNorm layers use each batch's own statistics, even in eval mode."""
    adapted = copy.deepcopy(model)
    for module in adapted.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.track_running_stats = False
            module.running_mean = module.running_var = module.num_batches_tracked = None
    return adapted


def summarise(errors: pd.DataFrame) -> dict[str, float]:
    clean = errors.loc[errors["corruption"] == "clean", "error"]
    return {"clean error": float(clean.iloc[0]) if len(clean) else float("nan"),
            "mCE (15)": mce(errors)["mce"], **noise_blur_split(errors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--c-root", type=Path, required=True, help="the -C folder the runs were evaluated on")
    parser.add_argument("--runs", required=True, help="comma-separated run folders holding model_plain.pt")
    parser.add_argument("--data-root", type=Path, help="folder of cifar-10-batches-py/: adds clean error")
    parser.add_argument("--batch-size", type=int, default=256, help="test images per batch and BN statistic")
    parser.add_argument("--result", type=Path, default=Path("benchmarks/results/bn_statistics.md"))
    args = parser.parse_args()
    clean = None
    if args.data_root is not None:
        _, test_ds, _ = build_datasets("cifar10", str(args.data_root))
        clean = (test_ds.images, test_ds.labels)
    rows = []
    for run in map(Path, args.runs.split(",")):
        if not (run / "model_plain.pt").exists():
            sys.exit(f"error: {run}/model_plain.pt not found; pass folders of finished `auxtrain fit` runs")
        model = load_model(run / "model_plain.pt")
        variants = (("running (as exported)", model), ("test batch", with_batch_statistics(model)))
        for label, variant in variants:
            start = time.time()
            errors = corruption_errors(variant, args.c_root, batch_size=args.batch_size,
                                       clean=clean, progress=False)
            method, _, seed = run.name.rpartition("-seed")
            rows.append({"run": run.name, "method": method or run.name, "seed": seed, "BN statistics": label,
                         **summarise(errors)})
            print(f"{run.name} {label}: {rows[-1]} ({time.time() - start:.0f} s)", flush=True)
    table = pd.DataFrame(rows)
    summary = seed_summary(table.drop(columns="run"), by=["method", "BN statistics"])
    text = "\n".join([
        "# Running vs test-batch BatchNorm statistics", "",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine: {platform.machine()}, "
        f"{os.cpu_count()} CPU cores; torch {torch.__version__}. -C set: `{args.c_root}`; batches of "
        f"{args.batch_size} images of one corruption and severity. Errors in percent (lower is better).", "",
        f"Command: `python benchmarks/bn_statistics.py {' '.join(sys.argv[1:])}`", "",
        "## Mean ± standard deviation over seeds", "",
        markdown_table(summary, index=True), "",
        "## Every run", "", markdown_table(table.drop(columns=["method", "seed"])), ""])
    args.result.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.result.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, args.result)
    print(text)


if __name__ == "__main__":
    main()
