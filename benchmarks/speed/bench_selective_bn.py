"""Speed of SelectiveBatchNorm2d against nn.BatchNorm2d on the same stacked batch.

Claim checked: with D equal domains (D = 2..5) a training step (forward + backward) of
SelectiveBatchNorm2d costs at most 1.2x that of nn.BatchNorm2d on the same (D*B, C, H, W) batch,
with 1 and with 2 CPU threads (CUDA is measured too when present). The default shape is
D x 128 x 64 x 32 x 32 (a 64-channel layer of a CIFAR ResNet at batch 128 per domain).

Columns: median times over interleaved repeats (each repeat runs every variant once, so machine
load hits all of them alike), the ratio of medians to BatchNorm2d (and of minimums, the better
estimate on a busy machine):

- ``selective``: the layer as users run it in eager mode (its ``auxtrain::selective_batch_norm``
  operator, the same one torch.compile runs);
- ``unequal``: the layer with unequal chunks (sizes B+B/2, B-B/2, B, ...).

Usage::

    python benchmarks/speed/bench_selective_bn.py --threads 1,2     # default shape, minutes (2 quiet cores)
    python benchmarks/speed/bench_selective_bn.py --threads 1,2 --quick --out /tmp/sbn.md   # seconds

``--out`` elsewhere keeps a quick check from replacing the recorded results.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from auxtrain.nn import SelectiveBatchNorm2d, route_domains
from auxtrain.run_dir import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: scripts, not a package
from _machine import header_lines, load_average  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results" / "selective_bn_speed.md"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor, sizes: list[int] | None,
          device: torch.device) -> float:
    x.grad = None
    _sync(device)
    start = time.perf_counter()
    if sizes is None:
        y = layer(x)
    else:
        with route_domains(layer, sizes=sizes):
            y = layer(x)
    y.backward(grad)
    _sync(device)
    return time.perf_counter() - start


def measure(device: torch.device, domains: int, batch: int, channels: int, size: int,
            repeats: int, channels_last: bool) -> dict[str, float]:
    torch.manual_seed(domains)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(domains * batch, channels, size, size, device=device).contiguous(memory_format=fmt)
    x.requires_grad_()
    grad = torch.randn_like(x)
    plain = nn.BatchNorm2d(channels).to(device)
    selective = SelectiveBatchNorm2d(channels, num_domains=domains).to(device)
    half = batch // 2
    unequal = [batch + half, batch - half] + [batch] * (domains - 2)
    variants = {
        "batchnorm2d": (plain, None),
        "selective": (selective, [batch] * domains),
        "unequal": (selective, unequal),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(repeats + 1):  # the first round warms up and is discarded
        for name, (layer, sizes) in variants.items():
            elapsed = _step(layer, x, grad, sizes, device)
            if rep:
                times[name].append(elapsed)
    return {
        **{name: statistics.median(values) for name, values in times.items()},
        **{f"{name} min": min(values) for name, values in times.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller batch and fewer repeats")
    parser.add_argument("--batch", type=int, default=None, help="images per domain (default 128, quick 32)")
    parser.add_argument("--channels", type=int, default=64, help="channels C (default 64)")
    parser.add_argument("--size", type=int, default=32, help="height = width (default 32)")
    parser.add_argument("--domains", default="2,3,4,5", help="comma-separated D values (default 2,3,4,5)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 9, quick 5)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last inputs")
    parser.add_argument("--threads", default=None,
                        help="comma-separated CPU thread counts to measure, e.g. 1,2 (default: torch's)")
    parser.add_argument("--note", action="append", default=[], help="a line of notes for the result file")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"Markdown result file (default {RESULTS})")
    args = parser.parse_args(argv)
    load_before = load_average()
    thread_counts = [int(t) for t in args.threads.split(",")] if args.threads else [torch.get_num_threads()]
    batch = args.batch or (32 if args.quick else 128)
    repeats = args.repeats or (5 if args.quick else 9)
    domain_counts = [int(d) for d in args.domains.split(",")]
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])

    header = ("| device | threads | D | input shape | BatchNorm2d ms | selective ms | ratio "
              "| ratio of minimums | unequal sizes ratio |")
    rows = [header, "|---|---|---|---|---|---|---|---|---|"]
    print(header, flush=True)
    runs = [(torch.device("cpu"), t) for t in thread_counts] + [(d, None) for d in devices[1:]]
    for device, threads in runs:
        if threads:
            torch.set_num_threads(threads)
        for domains in domain_counts:
            t = measure(device, domains, batch, args.channels, args.size, repeats, args.channels_last)
            base = t["batchnorm2d"]
            shape = f"{domains * batch}x{args.channels}x{args.size}x{args.size}"
            row = (f"| {device.type} | {threads or '-'} | {domains} | {shape} | {base * 1e3:.1f} "
                   f"| {t['selective'] * 1e3:.1f} | {t['selective'] / base:.2f} "
                   f"| {t['selective min'] / t['batchnorm2d min']:.2f} "
                   f"| {t['unequal'] / base:.2f} |")
            rows.append(row)
            print(row, flush=True)

    text = "\n".join([
        "# SelectiveBatchNorm2d vs nn.BatchNorm2d: forward + backward time",
        "",
        *header_lines(__file__, argv, "cpu", load_before, load_average()),
        f"- {'channels_last' if args.channels_last else 'NCHW'} float32; median of {repeats} interleaved "
        "repeats",
        *[f"- note: {line}" for line in args.note],
        "- ratio = selective / BatchNorm2d (medians; also of minimums) on the same stacked batch "
        "(target <= 1.2 on CPU for D <= 5); the unequal sizes ratio is of medians too",
        "",
        *rows,
        "",
    ])
    atomic_write_text(args.out, text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
