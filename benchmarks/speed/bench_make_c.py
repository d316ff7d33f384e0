"""Wall time of ``corruptions.make_c`` (all 19 corruptions x 5 severities, files written), quiet and busy.

Claims checked (issue 16):
  1. the full CIFAR-10-C size (N = 10,000 images of 32 px, 19 x 5 blocks, 2.9 GB written) takes
     <= 30 s on 2 quiet cores, including writing and fsync;
  2. on a machine kept busy by two other CPU-bound processes it takes <= 3x its quiet time, when
     called from Python (no OMP_WAIT_POLICY set) as well as from the command line.

Every measurement runs in a fresh child process (so thread settings and the environment are those a
user gets) that builds N clean images (the generated ``shapes`` test split), then times make_c into
a fresh temporary folder. "busy" starts two competing processes first, each a single-threaded torch
loop of small convolutions (like a small training run), and stops them after. Strategies:

* ``cells`` -- make_c itself: single-threaded ops, one cell per thread (``threads`` = torch's count);
* ``intra-op`` -- the former scheme, for comparison: one loop over batches of 1,000 images, each op
  split across torch's intra-op (OpenMP) threads, results copied into a memory map, with OpenMP's
  default (spinning) wait policy, as a Python caller gets it;
* ``intra-op-passive`` -- the same with OMP_WAIT_POLICY=PASSIVE (what the command line sets), to
  tell spinning apart from the fork-join itself (every op waits for its slowest thread, and a
  thread that lost its core to another process stalls all of them).

"cpu s" is the child's user + system CPU time: CPU burnt beyond the cells run's is overhead
(spinning threads), whatever the load.

    python benchmarks/speed/bench_make_c.py                 # N = 1,000 and 10,000, quiet and busy
    python benchmarks/speed/bench_make_c.py --sizes 1000    # a quicker look

Writes benchmarks/results/make_c_speed.md (the header of benchmarks/_machine.py, then the table).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: scripts, not a package
from _machine import REPO, format_load, header_lines, load_average, write_result  # noqa: E402

RESULT = REPO / "benchmarks" / "results" / "make_c_speed.md"

_COMPETITOR = """
import torch
torch.set_num_threads(1)
x, w = torch.randn(32, 16, 32, 32), torch.randn(16, 16, 3, 3)
while True:
    torch.nn.functional.conv2d(x, w, padding=1).sum()
"""


def child(n: int, strategy: str, out: str) -> dict:
    """Time one make_c-sized job in this (fresh) process; returns the numbers as a dict."""
    import numpy as np
    import torch

    from auxtrain.data import build_datasets
    from corruptions import corrupt, get_corruption_names, make_c

    _, test, _ = build_datasets("shapes", seed=0, train_size=16, test_size=n)
    images, labels = test.get_batch(list(range(n)))
    nhwc = images.permute(0, 2, 3, 1).contiguous().numpy()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    if strategy == "cells":
        make_c(nhwc, labels.numpy(), out, progress=False)
    else:
        names = get_corruption_names("all")
        for name in names:
            array = np.lib.format.open_memmap(Path(out) / f"{name}.npy", mode="w+", dtype=np.uint8,
                                              shape=(5 * n, *nhwc.shape[1:]))
            for k, severity in enumerate(range(1, 6)):
                generator = torch.Generator().manual_seed(severity)
                for s in range(0, n, 1000):
                    chunk = images[s:s + 1000]
                    array[k * n + s:k * n + s + chunk.shape[0]] = (
                        corrupt(chunk, name, severity, generator=generator).permute(0, 2, 3, 1).numpy())
            array.flush()
            del array
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    return {"seconds": seconds, "cpu": cpu, "threads": torch.get_num_threads()}


def measure(n: int, strategy: str, busy: bool, tmp: Path) -> tuple[dict, tuple]:
    competitors = [subprocess.Popen([sys.executable, "-c", _COMPETITOR]) for _ in range(2 if busy else 0)]
    try:
        time.sleep(2 if busy else 0)
        out = tmp / f"c-{n}-{strategy}-{int(busy)}"
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # as a Python caller
        if strategy == "intra-op-passive":
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        run = subprocess.run([sys.executable, __file__, "--child", str(n), strategy, str(out)],
                             capture_output=True, text=True, env=env, check=True)
        result = json.loads(run.stdout.strip().splitlines()[-1])
        load = load_average()
    finally:
        for p in competitors:
            p.kill()
            p.wait()
        subprocess.run(["rm", "-rf", str(tmp / f"c-{n}-{strategy}-{int(busy)}")], check=False)
    return result, load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated N (images per severity)")
    parser.add_argument("--strategies", default="cells,intra-op,intra-op-passive",
                        help="comma-separated: cells, intra-op, intra-op-passive")
    parser.add_argument("--tmp", default=None, help="folder for the outputs (default: a temp folder)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        n, strategy, out = args.child
        Path(out).mkdir(parents=True, exist_ok=True)
        print(json.dumps(child(int(n), strategy, out)))
        return
    import tempfile

    load_before = load_average()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            for strategy in args.strategies.split(","):
                quiet, quiet_load = measure(n, strategy, False, Path(tmp))
                busy, busy_load = measure(n, strategy, True, Path(tmp))
                rows.append((n, strategy, quiet, quiet_load, busy, busy_load))
                print(rows[-1], flush=True)
    lines = ["# make_c speed: quiet and with two competing CPU-bound processes", "",
             *header_lines(__file__, load_before=load_before), "",
             "| N | strategy | threads | quiet s | cpu s | load after | busy s | cpu s | load after "
             "| busy / quiet |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for n, strategy, quiet, ql, busy, bl in rows:
        ratio = busy["seconds"] / quiet["seconds"]
        lines.append(f"| {n:,} | {strategy} | {quiet['threads']} | {quiet['seconds']:.1f} "
                     f"| {quiet['cpu']:.1f} | {format_load(ql)} | {busy['seconds']:.1f} | {busy['cpu']:.1f} "
                     f"| {format_load(bl)} | {ratio:.2f} |")
    lines += ["", "Each row: N images x 19 corruptions x 5 severities, written (cells: make_c with checksums "
              "and fsync; intra-op: the former loop into a memory map, no fsync). A quiet row is only "
              "quiet if the load before it was below 1."]
    write_result(RESULT, lines)


if __name__ == "__main__":
    main()
