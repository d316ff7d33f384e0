"""Training-step time of auxiliary training: one stacked pass vs the authors' K+1 passes vs plain.

Claim checked: running the clean batch and its K corrupted views as ONE stacked batch through the
selective-BN extractor (auxtrain's AuxiliaryModel) is no slower than the authors' K+1 separate
passes, and costs at most about (K+1) x a plain training step on the clean batch alone.

For each backbone (default resnet20 and resnet18, CIFAR 32 px, batch 128, CPU) and K in 1, 2, 4,
one SGD step (forward, AuxiliaryLoss in stage two, backward, update) is timed for
  plain     the bare backbone on the clean batch only (cross-entropy),
  stacked   AuxiliaryModel(K): one extractor pass over (K+1)*B images,
  separate  the authors' way: K+1 passes of B images through a plain-BN extractor, saving the
            clean running statistics after pass 0 and restoring them at the end.
Configurations are timed round-robin (one step each per round) so load changes on a shared
machine hit them alike; the best (minimum) step time per configuration is reported, as timeit
recommends: it is the run least disturbed by other processes.

    python benchmarks/speed/bench_auxiliary_step.py            # full: batch 128, 3 timed rounds (~10 min CPU)
    python benchmarks/speed/bench_auxiliary_step.py --quick    # batch 16, 2 timed rounds (~1-2 min CPU)

Writes benchmarks/results/auxiliary_step_speed.md (the header of benchmarks/_machine.py, then the numbers).
Memory: resnet18 with K=4 at batch 128 holds activations of 640 images (several GB on CPU).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from auxtrain.auxiliary import AuxiliaryModel
from auxtrain.losses import AuxiliaryLoss, weight_tying_penalty
from auxtrain.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: scripts, not a package
from _machine import header_lines, load_average  # noqa: E402

NUM_CLASSES = 100


class SeparatePasses(nn.Module):
    """The authors' scheme: K+1 passes through a plain-BN extractor, clean BN statistics restored after."""

    def __init__(self, model: nn.Module, num_branches: int) -> None:
        super().__init__()
        self.model = model
        self.aux_heads = nn.ModuleList(copy.deepcopy(model.head) for _ in range(num_branches))

    @property
    def main_head(self) -> nn.Module:
        return self.model.head

    def forward(self, views: list[torch.Tensor]):
        bns = [m for m in self.model.modules() if isinstance(m, nn.BatchNorm2d)]
        main = self.model(views[0])
        saved = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in bns]
        pairs = zip(self.aux_heads, views[1:], strict=True)
        aux = [head(self.model.forward_features(v)) for head, v in pairs]
        for bn, (mean, var) in zip(bns, saved, strict=True):  # new tensors: autograd saved the old ones
            bn.running_mean, bn.running_var = mean, var
        return main, aux


def make_step(kind: str, name: str, k: int, batch: int, device: torch.device):
    torch.manual_seed(0)
    backbone = create_model(name, NUM_CLASSES).to(device)
    x = torch.randn((k + 1) * batch, 3, 32, 32, device=device)
    y = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    loss_fn = AuxiliaryLoss()
    if kind == "plain":
        model = backbone
    elif kind == "stacked":
        model = AuxiliaryModel(backbone, num_branches=k)
    else:
        model = SeparatePasses(backbone, k)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    views = list(x.split(batch))

    def step() -> None:
        if kind == "plain":
            loss = F.cross_entropy(model(views[0]), y)
        else:
            main, aux = model(x)[:2] if kind == "stacked" else model(views)
            tying = weight_tying_penalty(model.main_head, model.aux_heads)
            loss, _ = loss_fn(main, aux, y, tying=tying, tying_weight=1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def run(args: argparse.Namespace) -> list[tuple]:
    device = torch.device(args.device)
    models = args.models.split(",")
    branches = [int(k) for k in args.branches.split(",")]
    rows = []
    for name in models:
        steps = {("plain", 0): make_step("plain", name, 0, args.batch, device)}
        for k in branches:
            for kind in ("stacked", "separate"):
                steps[(kind, k)] = make_step(kind, name, k, args.batch, device)
        times: dict[tuple[str, int], list[float]] = {key: [] for key in steps}
        for round_ in range(args.warmup + args.rounds):
            for key, step in steps.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if round_ >= args.warmup:
                    times[key].append(time.perf_counter() - start)
        med = {key: min(v) for key, v in times.items()}
        plain = med[("plain", 0)]
        for k in branches:
            stacked, separate = med[("stacked", k)], med[("separate", k)]
            row = (name, k, plain * 1e3, stacked * 1e3, separate * 1e3, stacked / separate,
                   stacked / ((k + 1) * plain))  # fmt: skip
            rows.append(row)
            print(
                f"{name:10s} K={k}  plain {row[2]:8.1f} ms  stacked {row[3]:8.1f} ms  "
                f"separate {row[4]:8.1f} ms  stacked/separate {row[5]:.3f}  "
                f"stacked/((K+1)*plain) {row[6]:.3f}",
                flush=True,
            )
    return rows


def report(args: argparse.Namespace, rows: list[tuple], header: list[str]) -> str:
    lines = [
        "# AuxiliaryModel training-step speed: stacked single pass vs K+1 separate passes vs plain",
        "",
        *header,
        f"- Batch B = {args.batch} clean images (32 px, {NUM_CLASSES} classes); one SGD step incl. "
        f"AuxiliaryLoss (stage two); best of {args.rounds} round-robin rounds after {args.warmup} warm-up",
        "- On a shared machine absolute times are unreliable; ratios measured in the same rounds less so.",
        "",
        "| model | K | plain (ms) | stacked (ms) | separate (ms) | stacked / separate "
        "| stacked / ((K+1) x plain) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, k, plain, stacked, separate, r1, r2 in rows:
        lines.append(f"| {name} | {k} | {plain:.1f} | {stacked:.1f} | {separate:.1f} | {r1:.3f} | {r2:.3f} |")
    lines += ["", "Targets: stacked / separate <= 1; stacked / ((K+1) x plain) <= 1.05.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="resnet20,resnet18", help="comma-separated model names")
    parser.add_argument("--branches", default="1,2,4", help="comma-separated K values")
    parser.add_argument("--batch", type=int, default=128, help="clean images per step (default 128)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up rounds (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="batch 16, 2 timed rounds (a minute or two)")
    default_out = Path(__file__).resolve().parents[1] / "results" / "auxiliary_step_speed.md"
    parser.add_argument("--out", type=Path, default=default_out, help="Markdown result file")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.rounds = 16, 2
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
