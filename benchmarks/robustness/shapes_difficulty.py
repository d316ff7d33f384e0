"""Is the offline shapes dataset hard enough that corruptions hurt? Train clean, test corrupted.

Claim checked: a model trained on clean shapes images (standard training: random crop + flip
only) reaches a high clean test accuracy but loses clearly more under the benchmark corruptions,
as CIFAR models do on CIFAR-10-C, so shapes is a meaningful offline stand-in for robustness work.

Trains a model with SGD (momentum 0.9, nesterov, weight decay 5e-4, 30-step warm-up then cosine
LR) on the shapes train split, then reports clean test accuracy and accuracy on the test split
corrupted by each corruption (corruptions.corrupt, seeded) at each severity. The model is resnet20
(auxtrain.models, LR 0.1) or, for --quick, a small 5-conv CNN defined here (LR 0.05).

    python benchmarks/robustness/shapes_difficulty.py          # resnet20, 10,000 train, 15 epochs,
                                                               # 15 corruptions x 5 severities
    python benchmarks/robustness/shapes_difficulty.py --quick  # small CNN, 5,000 train, 8 epochs,
                                                               # 8 corruptions x 2 severities

Writes benchmarks/results/shapes_difficulty.md (the header of benchmarks/_machine.py, then the numbers).
OMP_WAIT_POLICY defaults to PASSIVE (see benchmarks/speed/bench_data_loader.py: busy shared cores).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import corruptions  # noqa: E402
from auxtrain.data import augment_batch, build_datasets, make_loader  # noqa: E402
from auxtrain.models import create_model  # noqa: E402
from auxtrain.nn import InputNormalization  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: scripts, not a package
from _machine import header_lines, load_average, write_result  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
QUICK_CORRUPTIONS = ("gaussian_noise", "impulse_noise", "defocus_blur", "motion_blur", "fog", "contrast",
                     "pixelate", "jpeg_compression")


def small_cnn(num_classes: int) -> nn.Module:
    def block(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    return nn.Sequential(*block(3, 32), *block(32, 32), nn.MaxPool2d(2), *block(32, 64), *block(64, 64),
                         nn.MaxPool2d(2), *block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(128, num_classes))


@torch.no_grad()
def accuracy(model, images, labels, batch=500) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        logits = model(images[i:i + batch])
        correct += int((logits.argmax(1) == labels[i:i + batch]).sum())
    return 100.0 * correct / len(images)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None,
                        help="resnet20 (default) or small_cnn (default with --quick)")
    parser.add_argument("--out", default=str(RESULTS / "shapes_difficulty.md"))
    args = parser.parse_args(argv)
    train_size, epochs = (5_000, 8) if args.quick else (10_000, 15)
    model_name = args.model or ("small_cnn" if args.quick else "resnet20")
    names = QUICK_CORRUPTIONS if args.quick else tuple(corruptions.get_corruption_names("common"))
    severities = (3, 5) if args.quick else (1, 2, 3, 4, 5)
    torch.manual_seed(args.seed)
    train, test, spec = build_datasets("shapes", seed=args.seed, train_size=train_size, test_size=2_000)
    if model_name == "small_cnn":
        model = small_cnn(spec.num_classes)
    else:
        model = create_model(model_name, spec.num_classes)
    model = nn.Sequential(InputNormalization(spec.mean, spec.std), model)  # takes uint8 images
    lr = 0.05 if model_name == "small_cnn" else 0.1
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    total = epochs * (len(train) // 128)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 30) * 0.5 * (1 + math.cos(math.pi * s / total)))
    gen = torch.Generator().manual_seed(args.seed)
    load_before = load_average()
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        loader = make_loader(train, 128, shuffle=True, seed=args.seed, epoch=epoch, drop_last=True)
        for images, labels in loader:
            loss = F.cross_entropy(model(augment_batch(images, gen)), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f} ({time.time() - t0:.0f} s)", flush=True)
    train_seconds = time.time() - t0
    images, labels = test.get_batch(range(len(test)))
    clean = accuracy(model, images, labels)
    rows = []
    for name in names:
        accs = []
        for s in severities:
            g = torch.Generator().manual_seed(s)
            corrupted = corruptions.corrupt(images, name, severity=s, generator=g)
            accs.append(accuracy(model, corrupted, labels))
        rows.append((name, accs))
        print(name, " ".join(f"{a:.1f}" for a in accs), flush=True)
    mean_all = sum(sum(a) for _, a in rows) / (len(rows) * len(severities))
    lines = [
        "# shapes: clean training, corrupted test",
        "",
        *header_lines(__file__, argv, "cpu", load_before),
        f"- {model_name}, LR {lr}, shapes seed {args.seed}, {len(train)} train / {len(test)} test images, "
        f"{epochs} epochs, batch 128, training took {train_seconds:.0f} s",
        "",
        f"Clean test accuracy: **{clean:.1f}%**; "
        f"mean corrupted accuracy over the table: **{mean_all:.1f}%**.",
        "",
        "| corruption | " + " | ".join(f"severity {s}" for s in severities) + " |",
        "| --- | " + " | ".join("---:" for _ in severities) + " |",
    ]
    lines += [f"| {name} | " + " | ".join(f"{a:.1f}" for a in accs) + " |" for name, accs in rows]
    write_result(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
