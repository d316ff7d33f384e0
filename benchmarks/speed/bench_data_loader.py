"""Input pipeline speed for 32x32 data: auxtrain's batched loader + batched augmentation vs per-image.

Claim checked: for CIFAR-sized images, fetching a whole batch with one gather (make_loader on an
array-backed dataset) and augmenting it with a few tensor ops (augment_batch) is much faster than
the usual per-image pipeline, so the loader is not what limits training speed.

Pipelines timed over one pass of the data (batch 128, in-process loading, CPU), all yielding
uint8 (B, 3, 32, 32) augmented batches (random crop 32 with 4-pixel zero padding + flip):
  batched        make_loader(...) then augment_batch(images, generator)
  getitems       DataLoader with default collation over __getitems__ (one gather, per-image unbind +
                 re-stack), then augment_batch
  per_image      DataLoader with default collation over __getitem__, torchvision v2 RandomCrop(32,
                 padding=4) + RandomHorizontalFlip applied per image in the dataset (the common recipe)
Pipelines are timed round-robin (one pass each per round) so load changes on a shared machine hit
them alike; the median pass time is reported, with images per second and the ratio to per_image.

    python benchmarks/speed/bench_data_loader.py            # shapes train split (10,000 images), 5 rounds
    python benchmarks/speed/bench_data_loader.py --quick    # 2,000 images, 3 rounds (~1 minute or less)
    python benchmarks/speed/bench_data_loader.py --cifar-root DIR   # CIFAR-10 train (50,000) from DIR

Writes benchmarks/results/data_loader_speed.md (the header of benchmarks/_machine.py, then the numbers).

OMP_WAIT_POLICY defaults to PASSIVE here (set before torch is imported; an explicit value in the
environment wins): on a machine whose cores are busy with other processes, OpenMP's default
spin-waiting made every multi-threaded torch op on a batch cost 20-80 ms instead of < 1 ms
(measured on this project's shared 2-core box), which would time the machine, not the pipeline.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from auxtrain.data import augment_batch, build_datasets, make_loader  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: scripts, not a package
from _machine import header_lines, load_average, write_result  # noqa: E402

RESULT = Path(__file__).resolve().parents[1] / "results" / "data_loader_speed.md"


class _PerImage(Dataset):
    """The usual recipe: augmentation per item in the dataset, default collation."""

    def __init__(self, base) -> None:
        self.base = base
        self.transform = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()])

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        image, label = self.base[i]
        return self.transform(image), label


class _ItemsOnly(Dataset):
    """Forwards __getitems__ (batched gather, per-image collation)."""

    def __init__(self, base) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        return self.base[i]

    def __getitems__(self, indices):
        return self.base.__getitems__(indices)


def _pass_batched(ds, batch):
    g = torch.Generator().manual_seed(0)
    n = 0
    for images, _ in make_loader(ds, batch, shuffle=True, seed=0, epoch=0):
        n += len(augment_batch(images, g))
    return n


def _pass_getitems(ds, batch):
    g = torch.Generator().manual_seed(0)
    n = 0
    loader = DataLoader(_ItemsOnly(ds), batch_size=batch, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    for images, _ in loader:
        n += len(augment_batch(images, g))
    return n


def _pass_per_image(ds, batch):
    n = 0
    loader = DataLoader(_PerImage(ds), batch_size=batch, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    for images, _ in loader:
        n += len(images)
    return n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 images, 3 rounds")
    parser.add_argument("--cifar-root", default=None, help="time CIFAR-10 train from this data root instead")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", default=str(RESULT))
    args = parser.parse_args(argv)
    if args.cifar_root:
        ds, _, _ = build_datasets("cifar10", args.cifar_root)
        data_name = f"CIFAR-10 train ({len(ds)} images)"
    else:
        n = 2_000 if args.quick else 10_000
        ds, _, _ = build_datasets("shapes", train_size=n, test_size=10)
        data_name = f"shapes train ({len(ds)} images)"
    if args.quick and len(ds) > 2_000:
        ds = torch.utils.data.Subset(ds, range(2_000))
        data_name += ", first 2,000"
    rounds = 3 if args.quick else 5
    pipelines = {"batched": _pass_batched, "getitems": _pass_getitems, "per_image": _pass_per_image}
    times: dict[str, list[float]] = {k: [] for k in pipelines}
    load_before = load_average()
    for fn in pipelines.values():  # warm-up
        fn(torch.utils.data.Subset(ds, range(256)), args.batch_size)
    for _ in range(rounds):
        for name, fn in pipelines.items():
            t0 = time.perf_counter()
            count = fn(ds, args.batch_size)
            times[name].append(time.perf_counter() - t0)
            assert count == len(ds)
    load_after = load_average()
    median = {k: statistics.median(v) for k, v in times.items()}
    lines = [
        "# Input pipeline speed (32x32, CPU)",
        "",
        *header_lines(__file__, argv, "cpu", load_before, load_after),
        f"- data: {data_name}, batch {args.batch_size}, {rounds} rounds round-robin, median of one pass",
        "",
        "| pipeline | seconds per pass | images / s | speed-up vs per_image |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in pipelines:
        lines.append(f"| {name} | {median[name]:.3f} | {len(ds) / median[name]:,.0f} | "
                     f"{median['per_image'] / median[name]:.1f}x |")
    write_result(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
