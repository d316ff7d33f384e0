"""Training-step time of auxiliary training: stacked pass vs separate passes vs (K+1) x plain, and views.

Claims checked (issue 16): on CPU the auxiliary step costs at most about 1.1 x (K+1) plain steps
with the CPU's default path (separate passes, one per selective-BN domain), and building the views
(crop, flip, K corrupted views; the model normalises its uint8 input itself) costs at most 10% of
the step, built the way training builds them on the device (``--views-ahead auto``: in the step's
thread on CPU, ahead in a background thread on GPUs; ``auxtrain.train_step.Batches``).

For each backbone (default resnet20 and resnet18, CIFAR 32 px, batch 128, CPU) and K in 1, 2, 4
(branches noise; noise,blur; noise,blur,weather,digital), one SGD step (forward, AuxiliaryLoss in
stage two, backward, update) is timed for
  plain      standard training: the model on the clean uint8 batch only (cross-entropy),
  stacked    AuxiliaryModel(K), one extractor pass over the stacked (K+1)*B images,
  separate   AuxiliaryModel(K), K+1 passes of B images, each routed to its own domain,
and, for the device's default path, the whole step from a clean uint8 batch:
  +views     crops, flips and views built in the step's thread, then the step (training's way on CPU),
  +ahead     the same with the next batch's views built in a background thread (training's way on GPUs).
View overhead share = (time with views - time without) / time with views.
Each configuration runs ``--steps`` consecutive steps per round (the background thread only
overlaps with its own configuration's steps), rounds are round-robin so load changes hit all
alike, and the best round's mean step time is reported (the run least disturbed by other
processes, as timeit recommends).

    python benchmarks/speed/bench_auxiliary_step.py            # full: batch 128, 3 rounds of 3 steps
    python benchmarks/speed/bench_auxiliary_step.py --quick    # batch 16, 2 rounds of 2 steps
    python benchmarks/speed/bench_auxiliary_step.py --threads 1 --clock process   # on a busy machine

``--clock process`` times CPU time instead of wall time: with one thread it is far less disturbed
by other processes, but it counts the background thread's work too, so +ahead then shows the
total work, not the step's critical path.

Writes benchmarks/results/auxiliary_step_speed.md (the header of benchmarks/_machine.py, then the numbers).
Memory: resnet18 with K=4 at batch 128 holds activations of 640 images (several GB on CPU).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from auxtrain.auxiliary import AuxiliaryModel
from auxtrain.data import augment_with_views, make_views, parse_branches
from auxtrain.losses import AuxiliaryLoss
from auxtrain.models import create_model
from auxtrain.train_step import Batches, TrainStep, use_channels_last

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: scripts, not a package
from _machine import header_lines, load_average  # noqa: E402

NUM_CLASSES = 100
BRANCHES = {1: "noise", 2: "noise,blur", 4: "noise,blur,weather,digital"}
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def make_runner(kind: str, name: str, k: int, batch: int, device: torch.device, channels_last: bool,
                amp: str = "off"):
    """A function running ``n`` consecutive training steps of configuration ``kind``."""
    torch.manual_seed(0)
    model = AuxiliaryModel(create_model(name, NUM_CLASSES), num_branches=0 if kind == "plain" else k,
                           mean=MEAN, std=STD).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    autocast = {"device_type": device.type, "enabled": amp == "bf16", "dtype": torch.bfloat16}  # as fit --amp
    separate = kind == "separate" or (kind in ("+views", "+ahead") and device.type == "cpu")
    step = TrainStep(model, opt, scaler, autocast, channels_last=channels_last, separate=separate)
    gen = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, generator=gen, device=device)
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=gen, device=device)
    branches = parse_branches(BRANCHES[k]) if k else []

    def make_inputs(x: torch.Tensor, g: torch.Generator) -> list[torch.Tensor]:
        return augment_with_views(x, g, lambda im: make_views(im, branches, g) if branches else [])

    criterion = AuxiliaryLoss()
    if kind == "plain":
        def loss(out, target):
            return F.cross_entropy(out.main, target), {}
    else:
        def loss(out, target):
            return criterion(out.main, out.aux, target, tying=model.weight_tying_penalty(), tying_weight=1.0)
    fixed = make_inputs(images, gen)[: 1 if kind == "plain" else k + 1]

    def run_steps(n: int) -> None:
        if kind == "+ahead":  # a fresh pipeline per block: its first batch is built inside the block
            batches = Batches(itertools.repeat((images, y), n), make_inputs, gen, device)
            for _, inputs, target in batches:
                step(inputs, target, loss)
            return
        for _ in range(n):
            step(make_inputs(images, gen) if kind == "+views" else fixed, y, loss)

    return run_steps


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    channels_last = use_channels_last(args.channels_last, device)
    rows = []
    for name in args.models.split(","):
        keys = [(kind, k, amp) for amp in args.amp.split(",")
                for kind, k in [("plain", 0)] + [(kind, k) for k in map(int, args.branches.split(","))
                                                 for kind in ("stacked", "separate", "+views", "+ahead")]]
        runners = {key: make_runner(key[0], name, key[1], args.batch, device, channels_last, key[2])
                   for key in keys}
        times: dict[tuple[str, int, str], list[float]] = {key: [] for key in keys}
        clock = time.process_time if args.clock == "process" else time.perf_counter
        for round_ in range(args.warmup + args.rounds):
            for key, runner in runners.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = clock()
                runner(args.steps)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if round_ >= args.warmup:
                    times[key].append((clock() - start) / args.steps)
        best = {key: min(v) * 1e3 for key, v in times.items()}
        default = "separate" if device.type == "cpu" else "stacked"
        for amp, k in sorted({(key[2], key[1]) for key in keys if key[1]}, key=lambda a: (a[0] != "off", a)):
            plain = best[("plain", 0, amp)]
            row = {"model": name, "k": k, "amp": amp, "plain": plain,
                   **{kind: best[(kind, k, amp)] for kind in ("stacked", "separate", "+views", "+ahead")}}
            row["ratio_stacked"] = row["stacked"] / ((k + 1) * plain)
            row["ratio_separate"] = row["separate"] / ((k + 1) * plain)
            row["share_views"] = (row["+views"] - row[default]) / row["+views"]
            row["share_ahead"] = (row["+ahead"] - row[default]) / row["+ahead"]
            rows.append(row)
            print(f"{name:10s} K={k} amp {amp:4s}  plain {plain:7.1f}  stacked {row['stacked']:7.1f}  sep "
                  f"{row['separate']:7.1f}  +views {row['+views']:7.1f}  +ahead {row['+ahead']:7.1f} ms  "
                  f"stacked/((K+1)plain) {row['ratio_stacked']:.3f}  separate/((K+1)plain) "
                  f"{row['ratio_separate']:.3f}  view share {row['share_views']:.1%} / ahead "
                  f"{row['share_ahead']:.1%}", flush=True)
    return rows


def report(args: argparse.Namespace, rows: list[dict], header: list[str]) -> str:
    device = torch.device(args.device)
    default = "separate" if device.type == "cpu" else "stacked"
    lines = [
        "# Auxiliary training step: stacked vs separate passes vs (K+1) x plain, and the cost of the views",
        "",
        *header,
        f"- Batch B = {args.batch} clean uint8 images (32 px, {NUM_CLASSES} classes), normalised by the "
        f"model; one SGD step incl. AuxiliaryLoss (stage two); channels_last "
        f"{'on' if use_channels_last(args.channels_last, device) else 'off'}; mean step time of the best of "
        f"{args.rounds} round-robin rounds of {args.steps} steps, after {args.warmup} warm-up round(s); "
        f"{'CPU' if args.clock == 'process' else 'wall'} time",
        f"- Branches: {'; '.join(f'K={k}: {v}' for k, v in BRANCHES.items())}. +views / +ahead: the "
        f"{default} step from a clean batch with crops, flips and views built in the step's thread / "
        "built ahead in a background thread (training's way on CPU / on GPUs: --views-ahead auto)",
        "- On a shared machine absolute times are unreliable; ratios measured in the same rounds less so.",
        "",
        "| model | K | amp | plain (ms) | stacked (ms) | separate (ms) | +views (ms) | +ahead (ms) "
        "| stacked / ((K+1) x plain) | separate / ((K+1) x plain) | view share | view share, ahead |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['k']} | {r['amp']} | {r['plain']:.1f} | {r['stacked']:.1f} "
                     f"| {r['separate']:.1f} | {r['+views']:.1f} | {r['+ahead']:.1f} "
                     f"| {r['ratio_stacked']:.3f} "
                     f"| {r['ratio_separate']:.3f} | {r['share_views']:.1%} | {r['share_ahead']:.1%} |")
    fp32 = {(r["model"], r["k"]): r for r in rows if r["amp"] == "off"}
    faster = [(r, fp32[(r["model"], r["k"])]) for r in rows
              if r["amp"] == "bf16" and (r["model"], r["k"]) in fp32]
    if faster:
        lines += ["", "bf16 autocast (`fit --amp bf16`): fp32 step time / bf16 step time, same rounds", "",
                  "| model | K | plain | stacked | separate | +ahead |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {b['model']} | {b['k']} | " + " | ".join(f"{f[kind] / b[kind]:.2f}x" for kind in
                  ("plain", "stacked", "separate", "+ahead")) + " |" for b, f in faster]
    lines += ["", "Targets (CPU): the default path / ((K+1) x plain) <= 1.1; view share, ahead <= 10%.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="resnet20,resnet18", help="comma-separated model names")
    parser.add_argument("--branches", default="1,2,4", help="comma-separated K values (1, 2, 4)")
    parser.add_argument("--batch", type=int, default=128, help="clean images per step (default 128)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--steps", type=int, default=3, help="consecutive steps per round (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up rounds (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"],
                        help="memory format, as fit's --channels-last (default auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--clock", default="wall", choices=["wall", "process"],
                        help="wall time, or CPU time of the process (see above; default wall)")
    parser.add_argument("--amp", default="off", help="comma list of off, bf16: each timed in the same rounds "
                        "(bf16 = fit's --amp bf16 autocast; default off)")
    parser.add_argument("--quick", action="store_true", help="batch 16, 2 rounds of 2 steps (minutes)")
    default_out = Path(__file__).resolve().parents[1] / "results" / "auxiliary_step_speed.md"
    parser.add_argument("--out", type=Path, default=default_out, help="Markdown result file")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.rounds, args.steps = 16, 2, 2
    bad = [k for k in args.branches.split(",") if not k.isdigit() or int(k) not in BRANCHES]
    if bad:
        parser.error(f"--branches {args.branches}: each K must be one of {', '.join(map(str, BRANCHES))}")
    if set(args.amp.split(",")) - {"off", "bf16"}:
        parser.error(f"--amp {args.amp}: each entry must be off or bf16")
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = load_average()
    rows = run(args)
    text = report(args, rows, header_lines(__file__, argv, args.device, load_before, load_average()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
