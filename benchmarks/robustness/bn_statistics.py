"""Is a model's corruption error partly a BatchNorm-statistics mismatch? A diagnostic.

Claim checked: part of the corruption error of an auxiliary-trained model comes from its BN running
statistics, collected on clean images only, not from its features; so with statistics that fit the
corrupted inputs its error falls more than that of naive augmentation, whose statistics already mix
clean and corrupted images.

An exported auxtrain model normalises every input with running statistics collected on clean data
(selective BN keeps the corrupted domains' statistics out of them); naive augmentation's model
collects them on a clean + corrupted mixture. This script evaluates each run's `model_plain.pt`
on one -C set: as exported (running statistics); with every BatchNorm layer using the statistics
of the test batch itself (all images of a batch share one corruption and severity, as in test-time
BN adaptation, Schneider et al. 2020); and, with --data-root, with running statistics re-estimated
on training images plus their corrupted views (the mixture augmentation's statistics come from,
without retraining). If a method's error falls much more than another's when BN sees the right
statistics, its features handle the corruption but its running statistics do not fit it.

    python benchmarks/robustness/bn_statistics.py --c-root runs/robustness/CIFAR-10-C --data-root ~/data \\
        --runs runs/robustness/standard-seed0,runs/robustness/auxiliary-seed0 --result bn.md
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from cifar10 import markdown_table, noise_blur_split, seed_summary  # same folder
from torch import nn

from auxtrain.data import build_datasets
from auxtrain.data.augment import augment_batch
from auxtrain.data.views import make_views
from auxtrain.evaluation import corruption_errors, mce
from auxtrain.export import load_model
from auxtrain.run_dir import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: scripts, not a package
from _machine import header_lines, load_average  # noqa: E402


def with_batch_statistics(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose BatchNorm layers use each batch's own statistics, even in eval mode."""
    adapted = copy.deepcopy(model)
    for module in adapted.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.track_running_stats = False
            module.running_mean = module.running_var = module.num_batches_tracked = None
    return adapted


def with_recalibrated_statistics(model: nn.Module, images: torch.Tensor, branches: str,
                                 seed: int = 0, batch_size: int = 128) -> nn.Module:
    """A copy of ``model`` whose BN running statistics are re-estimated on ``images`` plus one corrupted
    view per branch, made as in training (random crop with zero padding 4 and flip, then
    ``make_views``): the clean + corrupted mixture naive augmentation's statistics come from; weights
    are unchanged. ``images``: (N, 3, H, W) uint8. Without the crop's zero borders the statistics
    shift enough to cost about 3 points of clean error, so the training augmentation is kept."""
    adapted = copy.deepcopy(model)
    for module in adapted.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over all batches
    generator = torch.Generator().manual_seed(seed)
    adapted.train()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            chunk = augment_batch(images[start:start + batch_size], generator)
            adapted(torch.cat([chunk, *make_views(chunk, branches, generator)]).float() / 255)
    return adapted.eval()


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
    parser.add_argument("--recalibrate", default="noise,blur", metavar="BRANCHES",
                        help="also re-estimate BN statistics on training images + these corrupted views "
                             "(needs --data-root; 'none' skips)")
    parser.add_argument("--recalibrate-size", type=int, default=2000, help="training images used for it")
    parser.add_argument("--result", type=Path, default=Path("benchmarks/results/bn_statistics.md"))
    args = parser.parse_args()
    load_before = load_average()
    clean = train_images = None
    if args.data_root is not None:
        train_ds, test_ds, _ = build_datasets("cifar10", str(args.data_root))
        clean = (test_ds.images, test_ds.labels)
        if args.recalibrate != "none":  # the first N training images: never the test set
            train_images = torch.from_numpy(train_ds.images[:args.recalibrate_size]).permute(0, 3, 1, 2)
    rows = []
    for run in map(Path, args.runs.split(",")):
        if not (run / "model_plain.pt").exists():
            sys.exit(f"error: {run}/model_plain.pt not found; pass folders of finished `auxtrain fit` runs")
        model = load_model(run / "model_plain.pt")
        variants = [("running (as exported)", model), ("test batch", with_batch_statistics(model))]
        if train_images is not None:
            variants.append((f"re-estimated on clean + {args.recalibrate}",
                             with_recalibrated_statistics(model, train_images, args.recalibrate)))
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
        *header_lines(__file__, device="cpu", load_before=load_before), "",
        f"-C set: `{args.c_root}`; batches of {args.batch_size} images of one corruption and severity. "
        "Errors in percent (lower is better).", "",
        "## Mean ± standard deviation over seeds", "",
        markdown_table(summary, index=True), "",
        "## Every run", "", markdown_table(table.drop(columns=["method", "seed"])), ""])
    args.result.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.result, text)
    print(text)


if __name__ == "__main__":
    main()
