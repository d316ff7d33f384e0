"""Corruption speed: corruptions.corrupt() on whole batches vs imagecorruptions one image at a time.

Claims checked (issue 16): at 32 px every corruption at least 2x imagecorruptions 1.1.2 and the
geometric mean of the speed-ups >= 20x; at 224 px none slower than imagecorruptions; make_c of
10,000 images x 19 corruptions x 5 severities in <= 30 s; all on the 2 CPU cores of this machine.

For each corruption and image size, in the same process:
  ours      corrupt(batch, name, s) on a uint8 (B, 3, H, W) CPU batch, one call per severity 1..5
  imagecorr imagecorruptions.corrupt(image, s, corruption_name=name) per (H, W, 3) uint8 image
The two are timed round-robin (ours, theirs, ours, ...) so load changes on a shared machine hit both
alike; the median round is reported. Images: the 1,000 lossless CIFAR-10 test images of
/work/shared/data when present (else smooth synthetic images); the 224 px images are those upsampled.
imagecorruptions needs setuptools<81 (pkg_resources); corruptions it cannot run are marked.

    python benchmarks/speed/bench_corruptions.py          # 3 rounds; make_c on 10,000 images (~3 GB temp)
    python benchmarks/speed/bench_corruptions.py --quick  # 1 round, smaller samples; make_c on 1,000
                                                          # images, extrapolated linearly to 10,000
                                                          # (and says so)

Writes benchmarks/results/corruption_speed.md (the header of benchmarks/_machine.py, then the numbers).
OMP_WAIT_POLICY defaults to PASSIVE (set before torch is imported): with OpenMP's default
spin-waiting, every multi-threaded op was 10-20x slower while other processes kept the cores busy.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import corruptions  # noqa: E402
from corruptions import corrupt, get_corruption_names, make_c  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: scripts, not a package
from _machine import format_load, header_lines, load_average  # noqa: E402

CIFAR_SUBSET = Path("/work/shared/data/cifar10_lossless_subset.npz")
RESULT = Path(__file__).resolve().parents[1] / "results" / "corruption_speed.md"


def load_images(n: int) -> tuple[np.ndarray, str]:
    """(n, 32, 32, 3) uint8 test images and a description of their source."""
    if CIFAR_SUBSET.is_file():
        data = np.load(CIFAR_SUBSET)["test_data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        reps = math.ceil(n / len(data))
        source = f"CIFAR-10 test images 0..{len(data) - 1} (lossless subset)"
        if reps > 1:
            source += f", tiled {reps}x"
        return np.ascontiguousarray(np.tile(data, (reps, 1, 1, 1))[:n]), source
    g = torch.Generator().manual_seed(0)
    low = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(32, 32), mode="bicubic")
    images = ((low + 0.05 * torch.randn(n, 3, 32, 32, generator=g)).clamp(0, 1) * 255).to(torch.uint8)
    return images.permute(0, 2, 3, 1).contiguous().numpy(), "synthetic smooth images (CIFAR subset not found)"


def upsample(images: np.ndarray, size: int) -> np.ndarray:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=False, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def import_imagecorruptions():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import imagecorruptions
        return imagecorruptions, None
    except Exception as exc:  # noqa: BLE001 - report whatever stops it
        return None, f"{type(exc).__name__}: {exc}"


def time_ours(batch: torch.Tensor, name: str, generator: torch.Generator) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU second) of one round: severities 1..5."""
    start, cpu = time.perf_counter(), time.process_time()
    for severity in range(1, 6):
        corrupt(batch, name, severity, generator=generator)
    n = 5 * batch.shape[0]
    return n / (time.perf_counter() - start), n / max(time.process_time() - cpu, 1e-9)


def time_theirs(ic, images: np.ndarray, name: str) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for severity in range(1, 6):
            for image in images:
                ic.corrupt(image, severity, corruption_name=name)
    n = 5 * len(images)
    return n / (time.perf_counter() - start), n / max(time.process_time() - cpu, 1e-9)


def bench_size(
    ic, images: np.ndarray, batch_size: int, per_severity: int, rounds: int, names: list[str]
) -> list[dict]:
    batch = torch.from_numpy(images[:batch_size]).permute(0, 3, 1, 2).contiguous()
    singles = images[:per_severity]
    generator = torch.Generator().manual_seed(0)
    rows = []
    for name in names:
        corrupt(batch[:2], name, 3, generator=generator)  # warm-up (lazy imports, caches)
        theirs_error = None
        if ic is None:
            theirs_error = "not installed"
        else:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ic.corrupt(singles[0], 1, corruption_name=name)
            except Exception as exc:  # noqa: BLE001
                theirs_error = f"{type(exc).__name__}"
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(time_ours(batch, name, generator))
            if theirs_error is None:
                theirs.append(time_theirs(ic, singles, name))
        med = lambda pairs, i: statistics.median(p[i] for p in pairs) if pairs else None  # noqa: E731
        row = {"name": name, "ours": med(ours, 0), "ours_cpu": med(ours, 1), "error": theirs_error,
               "load": os.getloadavg()[0]}
        row["theirs"], row["theirs_cpu"] = med(theirs, 0), med(theirs, 1)
        rows.append(row)
        shown = f"{row['theirs']:,.0f}" if row["theirs"] else f"cannot run ({theirs_error})"
        print(f"  {name:18s} ours {row['ours']:>10,.0f} img/s   imagecorruptions {shown}", flush=True)
    return rows


def bench_make_c(images: np.ndarray, labels: np.ndarray, num: int, target: int) -> tuple[float, float, int]:
    """(measured seconds for ``num`` images, seconds extrapolated to ``target`` images, num)."""
    with tempfile.TemporaryDirectory(prefix="bench_make_c_") as tmp:
        start = time.perf_counter()
        make_c(images[:num], labels[:num], tmp, names=None, seed=0, progress=False)
        seconds = time.perf_counter() - start
    return seconds, seconds * target / num, num


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def table(rows: list[dict]) -> tuple[list[str], float, float, list[str]]:
    lines = [
        "| corruption | corrupt() img/s | imagecorruptions img/s | speed-up | speed-up in CPU time "
        "| load (1 min) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    ratios, cpu_ratios, slower = [], [], []
    for r in rows:
        if r["theirs"]:
            ratio, cpu_ratio = r["ours"] / r["theirs"], r["ours_cpu"] / r["theirs_cpu"]
            ratios.append(ratio)
            cpu_ratios.append(cpu_ratio)
            if ratio <= 1:
                slower.append(r["name"])
            lines.append(
                f"| {r['name']} | {r['ours']:,.0f} | {r['theirs']:,.0f} | {ratio:.1f}x | {cpu_ratio:.1f}x "
                f"| {r['load']:.1f} |"
            )
        else:
            lines.append(
                f"| {r['name']} | {r['ours']:,.0f} | cannot run ({r['error']}) | - | - | {r['load']:.1f} |"
            )
    g, g_cpu = geomean(ratios), geomean(cpu_ratios)
    lines.append(f"| **geometric mean** ({len(ratios)} that both run) | | | **{g:.1f}x** | {g_cpu:.1f}x | |")
    return lines, g, g_cpu, slower


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="~1-2 minute version (extrapolates make_c)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--skip-make-c", action="store_true", help="only the per-corruption table")
    parser.add_argument("--names", default="all",
                        help="comma-separated corruptions to time (default: all; iterating only)")
    parser.add_argument("--sizes", default="32,224", help="image sizes to time: 32, 224 or both")
    parser.add_argument("--out", type=Path, default=RESULT, help=f"Markdown result (default: {RESULT})")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = 1 if args.quick else 3
    load_before = load_average()
    images, source = load_images(10_000)
    labels = np.arange(len(images)) % 10
    ic, ic_error = import_imagecorruptions()
    print(f"corruptions from {Path(corruptions.__file__).parent}; imagecorruptions: {ic_error or 'ok'}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {format_load(load_before)}")

    names = get_corruption_names("all") if args.names == "all" else args.names.split(",")
    sizes = {int(v) for v in args.sizes.split(",")}
    rows32, rows224 = [], []
    if 32 in sizes:
        print("32 px (batch 256):")
        rows32 = bench_size(ic, images, 256, 8 if args.quick else 32, rounds, names)
    if 224 in sizes:
        print("224 px:")
        big = upsample(images[:32], 224)
        rows224 = bench_size(ic, big, 16 if args.quick else 32, 1 if args.quick else 2, rounds, names)

    make_c_line = "make_c: skipped (--skip-make-c)"
    if not args.skip_make_c:
        num = 1000 if args.quick else 10_000
        print(f"make_c: {num} images x 19 x 5 ...", flush=True)
        seconds, projected, num = bench_make_c(images, labels, num, 10_000)
        if num == 10_000:
            make_c_line = f"make_c, 10,000 images x 19 x 5 (batch 1000): **{seconds:.1f} s** measured"
        else:
            make_c_line = (
                f"make_c, {num:,} images x 19 x 5 (batch 1000): {seconds:.1f} s measured; extrapolated "
                f"linearly to 10,000 images: **{projected:.0f} s** (quick mode: NOT a measurement of 10,000)"
            )
        print(make_c_line.replace("**", ""))
    load_after = load_average()

    lines32, g32, g32_cpu, _ = table(rows32)
    below2_32 = [r["name"] for r in rows32 if r["theirs"] and r["ours"] / r["theirs"] < 2]
    lines224, g224, g224_cpu, slow224 = table(rows224)
    out = [
        "# Corruption speed (CPU): corrupt() on batches vs imagecorruptions per image",
        "",
        *header_lines(__file__, argv, "cpu", load_before, load_after),
        f"- images: {source}; 224 px = the same upsampled (bilinear)",
        f"- rounds: {rounds} round-robin (median); severities 1..5 in every round; imagecorruptions "
        f"{'unavailable: ' + ic_error if ic_error else 'imported from its installed package'}",
        "",
        "## 32 x 32 (ours: batch of 256 uint8 images; imagecorruptions: one image at a time)",
        "",
        *lines32,
        "",
        f"Below 2x imagecorruptions at 32 px: {', '.join(below2_32) or 'none'}.",
        "",
        f"## 224 x 224 (ours: batch of {16 if args.quick else 32}; imagecorruptions: one image at a time)",
        "",
        *lines224,
        "",
        f"Slower than imagecorruptions at 224 px: {', '.join(slow224) or 'none'}.",
        "",
        "## make_c",
        "",
        make_c_line,
        "",
        "Targets (issue 16): at 32 px every corruption >= 2x imagecorruptions and geometric mean >= 20x "
        f"(measured {g32:.1f}x wall-clock, {g32_cpu:.1f}x in CPU time); at 224 px none slower "
        f"(geometric mean {g224:.1f}x); make_c 10,000 x 19 x 5 <= 30 s on 2 cores.",
        "",
        "Speed-ups are wall-clock ratios of interleaved rounds; the CPU-time column divides images by the "
        "process CPU seconds instead, which is less sensitive to other processes on a busy machine "
        "(torch may use 2 threads, imagecorruptions 1, so on an idle machine the wall-clock ratio can "
        "exceed it).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(out))
    print(
        f"geometric mean speed-up: {g32:.1f}x at 32 px ({g32_cpu:.1f}x CPU time), {g224:.1f}x at 224 px "
        f"({g224_cpu:.1f}x CPU time); wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
