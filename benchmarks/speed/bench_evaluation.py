"""Evaluation throughput and memory of ``auxtrain.evaluation.corruption_errors`` on a CIFAR-C layout set.

Claims checked:
  1. throughput: corruption_errors (memory-mapped uint8 files, uint8 -> float on the device,
     argmax, counting) reaches >= 90 % of the raw forward throughput of the same model on the same
     batches (already in memory as float tensors);
  2. memory: peak RSS (VmHWM) stays <= 1.5 GB while streaming 19 files x (5 x N) images (N = 10,000 in the
     full run, i.e. the 19 x 50,000 CIFAR-C size, 2.9 GB of pixels).

How the set is built: the clean images are the generated ``shapes`` test split (no download).
``corruptions.make_c`` writes a few fast corruptions (--generate, default gaussian_noise and
contrast); the other names of the 19 are byte copies of those files, because generating all 19
(glass_blur, frost, zoom_blur, ...) at 50,000 images each takes hours on a shared 2-core CPU.
The pixel content is irrelevant for speed and memory, so the copies measure the same thing.

Throughput (1): raw and eval passes over severity 1 of the first --throughput-files files
alternate, --repeats times, so load changes on a shared machine hit both alike; medians are
reported. Because a busy machine makes that ratio noisy, the eval pass also times the model's own
forward calls: "forward share" = forward time / eval wall time is the same ratio measured inside one
pass (what the loading, uint8 -> float conversion and counting cost on top of the network).
Memory (2): a fresh child process (so the parent's preloaded float batches do not count) runs
corruption_errors over all 19 files and reports resource.getrusage ru_maxrss. By default the
child uses a tiny model (conv 3->16, pool, linear) so that streaming 950,000 images is dominated by
reading, not by the network; --rss-model resnet20 uses the real model instead.

    python benchmarks/speed/bench_evaluation.py            # full: N = 10,000 (19 x 50,000 images)
    python benchmarks/speed/bench_evaluation.py --quick    # N = 200, ~1-2 minutes on a busy 2-core CPU

Writes benchmarks/results/evaluation_speed.md (the header of benchmarks/_machine.py, then the numbers).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from auxtrain.export import NormalizedModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: scripts, not a package
from _machine import header_lines, load_average  # noqa: E402

RESULT = Path(__file__).resolve().parents[1] / "results" / "evaluation_speed.md"
CIFAR_MEAN, CIFAR_STD = (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)


def build_model(name: str) -> nn.Module:
    """The model as ``load_model`` returns it: NormalizedModel around a backbone, eval mode."""
    if name == "tiny":
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(16, 10))
    else:
        from auxtrain.models import create_model

        torch.manual_seed(0)
        net = create_model(name, num_classes=10)
    return NormalizedModel(net, CIFAR_MEAN, CIFAR_STD).eval()


def build_set(root: Path, n: int, generate: list[str], device: str) -> tuple[float, int]:
    """Write the 19-name CIFAR-C layout set into ``root``; returns (make_c seconds, images generated)."""
    from auxtrain.data import build_datasets
    from corruptions import get_corruption_names, make_c

    _, test_ds, _ = build_datasets("shapes", seed=0, train_size=16, test_size=n)
    images, labels = test_ds.get_batch(list(range(n)))
    t0 = time.perf_counter()
    make_c(images, labels.numpy(), root, names=generate, seed=0, device=device, progress=False)
    seconds = time.perf_counter() - t0
    for i, name in enumerate(n for n in get_corruption_names("all") if n not in generate):
        shutil.copyfile(root / f"{generate[i % len(generate)]}.npy", root / f"{name}.npy")
    return seconds, len(generate) * 5 * n


class Timed(nn.Module):
    """Wraps a model and accumulates the wall time of its forward calls."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.seconds = model, 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        out = self.model(x)
        if out.is_cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - t0
        return out


def raw_batches(root: Path, names: list[str], n: int, batch_size: int) -> list[torch.Tensor]:
    """Severity-1 float batches as corruption_errors feeds them, preloaded (what 'raw forward' runs on)."""
    out = []
    for name in names:
        array = np.load(root / f"{name}.npy", mmap_mode="r")
        for i in range(0, n, batch_size):
            x = torch.from_numpy(np.array(array[i:min(i + batch_size, n)]))
            out.append(x.permute(0, 3, 1, 2).contiguous().float() / 255)
    return out


@torch.inference_mode()
def time_raw(model: nn.Module, batches: list[torch.Tensor]) -> float:
    t0 = time.perf_counter()
    for x in batches:
        model(x).argmax(1)
    return time.perf_counter() - t0


def time_eval(model: nn.Module, root: Path, names: list[str], batch_size: int,
              device: str) -> tuple[float, float]:
    """(wall seconds, seconds inside the model's forward) of corruption_errors at severity 1."""
    from auxtrain.evaluation import corruption_errors

    timed = Timed(model)
    t0 = time.perf_counter()
    corruption_errors(timed, root, corruptions=names, severities=[1], batch_size=batch_size, device=device,
                      progress=False)
    return time.perf_counter() - t0, timed.seconds


def _rss_mb(field: str = "VmRSS") -> float:
    """Current (VmRSS) or peak (VmHWM) resident memory of this process from /proc, in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(root: str, model_name: str, batch_size: int, device: str) -> None:
    """Stream all files of ``root`` once; print JSON with the RSS before and the peak RSS."""
    import auxtrain.data.corrupted as reader
    from auxtrain.evaluation import corruption_errors

    def peak_mb() -> float:
        # VmHWM, not ru_maxrss: Linux carries the parent's RSS at fork into the child's ru_maxrss
        # across exec, so ru_maxrss would report the parent's (preloaded float batches) memory.
        return _rss_mb("VmHWM")

    per_file: dict[str, float] = {}
    release = reader.NpyBlock.release

    def recording(self):  # peak RSS when each block is done: shows memory stays flat
        release(self)
        per_file[self.path.stem] = peak_mb()

    reader.NpyBlock.release = recording
    model = build_model(model_name)
    start = _rss_mb()
    t0 = time.perf_counter()
    errors = corruption_errors(model, root, batch_size=batch_size, device=device, progress=False)
    seconds = time.perf_counter() - t0
    peaks = list(per_file.values())
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"start_rss_mb": start, "peak_rss_mb": peak_mb(), "ru_maxrss_mb": maxrss,
                      "seconds": seconds,
                      "peak_after_first_file_mb": peaks[0], "peak_after_half_mb": peaks[len(peaks) // 2],
                      "images": int(errors["n"].sum()), "files": int(errors["corruption"].nunique())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1,000 test images, fewer repeats")
    parser.add_argument("--n", type=int, help="test images per severity (default 10,000; quick 200)")
    parser.add_argument("--model", default="resnet20", help="model of the throughput comparison")
    parser.add_argument("--rss-model", default="tiny", help="model of the memory run (tiny or a model name)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--generate", default="gaussian_noise,contrast", help="corruptions really generated")
    parser.add_argument("--throughput-files", type=int, help="files in the throughput comparison")
    parser.add_argument("--repeats", type=int, help="alternating raw/eval passes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workdir", help="where the set is written (default: a temporary folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.rss_model, args.batch_size, args.device)
    n = args.n or (200 if args.quick else 10000)
    files = args.throughput_files or (5 if args.quick else 1)
    repeats = args.repeats or (2 if args.quick else 3)
    generate = args.generate.split(",")
    load_before = load_average()

    tmp = tempfile.mkdtemp(prefix="bench_eval_", dir=args.workdir)
    root = Path(tmp)
    try:
        gen_seconds, gen_images = build_set(root, n, generate, args.device)
        print(f"make_c: {gen_images} images in {gen_seconds:.1f} s; 19 files of {5 * n} images in {root}")
        model = build_model(args.model)
        from corruptions import get_corruption_names

        names = get_corruption_names("all")[:files]  # every name exists (generated or copied)
        batches = raw_batches(root, names, n, args.batch_size)
        images = sum(b.shape[0] for b in batches)
        time_raw(model, batches[:2])  # warm-up
        raw, ev, fwd = [], [], []
        for r in range(repeats):
            raw.append(time_raw(model, batches))
            wall, inside = time_eval(model, root, names, args.batch_size, args.device)
            ev.append(wall)
            fwd.append(inside / wall)
            print(f"repeat {r + 1}: raw {images / raw[-1]:.0f} img/s, eval {images / ev[-1]:.0f} img/s, "
                  f"forward share of the eval pass {fwd[-1]:.1%}")
        del batches
        raw_ips, eval_ips = images / statistics.median(raw), images / statistics.median(ev)
        share = statistics.median(fwd)
        proc = subprocess.run([sys.executable, __file__, "--child", str(root), "--rss-model", args.rss_model,
                               "--batch-size", str(args.batch_size), "--device", args.device],
                              capture_output=True, text=True, check=True)
        mem = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratio = eval_ips / raw_ips
    set_gb = 19 * 5 * n * 32 * 32 * 3 / 1e9
    print(f"throughput: raw {raw_ips:.0f} img/s, eval {eval_ips:.0f} img/s, ratio {ratio:.1%}; forward share "
          f"{share:.1%} (target >= 90%)")
    print(f"memory: {mem['files']} files x {5 * n} images ({set_gb:.2f} GB of pixels): peak RSS "
          f"{mem['peak_rss_mb']:.0f} MB (RSS before streaming {mem['start_rss_mb']:.0f} MB), "
          f"{mem['images'] / mem['seconds']:.0f} img/s with the {args.rss_model} model (target <= 1500 MB)")

    lines = [
        "# Evaluation speed and memory (`corruption_errors`)", "",
        *header_lines(__file__, None, args.device, load_before, load_average()),
        f"- set: shapes test split, N = {n} images per severity, 19 files x {5 * n} images "
        f"({set_gb:.2f} GB); really generated by make_c: {', '.join(generate)} ({gen_images} images in "
        f"{gen_seconds:.0f} s); the other {19 - len(generate)} names are byte copies of those files "
        f"(generating all 19 at this size takes hours here; content does not matter for speed or memory)",
        "",
        "| measurement | value | target |", "|---|---:|---:|",
        f"| raw forward, {args.model}, preloaded float batches of {args.batch_size} | "
        f"{raw_ips:.0f} img/s | |",
        f"| corruption_errors, same model, same {images} images ({files} file(s), severity 1) | "
        f"{eval_ips:.0f} img/s | |",
        f"| eval / raw throughput (median of {repeats} alternating passes) | {ratio:.1%} | >= 90% |",
        f"| forward share of the eval pass (model time / eval wall time, median) | {share:.1%} | >= 90% |",
        f"| peak RSS streaming all 19 files ({args.rss_model} model, fresh process) | "
        f"{mem['peak_rss_mb']:.0f} MB | <= 1500 MB |",
        f"| RSS of that process before streaming (imports + model) | {mem['start_rss_mb']:.0f} MB | |",
        f"| resource.getrusage ru_maxrss of that process (includes the parent's RSS at fork, see below) | "
        f"{mem['ru_maxrss_mb']:.0f} MB | |",
        f"| peak RSS after the first file / after half of the files | "
        f"{mem['peak_after_first_file_mb']:.0f} MB / {mem['peak_after_half_mb']:.0f} MB | flat |",
        f"| streaming rate with the {args.rss_model} model | {mem['images'] / mem['seconds']:.0f} img/s | |",
        "",
        "Peak RSS is the child's VmHWM (/proc/self/status). Linux copies the parent's resident size at "
        "fork into the child's ru_maxrss and keeps it across exec, so getrusage reports at least the "
        "parent's RSS at fork time (the parent holds the preloaded float batches of the throughput "
        "test); VmHWM belongs to the child's own address space.",
        "",
        "Per-repeat passes (raw / eval seconds, forward share): "
        + ", ".join(f"{a:.2f} / {b:.2f}, {c:.1%}" for a, b, c in zip(raw, ev, fwd, strict=True)),
        "",
    ]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
