"""Corruption robustness of a model: the error table, the report, and the one runner that does both.

* :func:`evaluate` is the runner behind ``auxtrain eval`` and ``fit``'s final report: a -C set
  (given, or generated once from clean images and cached), the error table, the report files, the
  summary.
* :func:`corruption_errors` streams a -C set (CIFAR-C ``.npy`` files, memory-mapped, or an
  ImageNet-C style folder tree) through a model and returns the error table.
* :func:`mce` (from :mod:`auxtrain.metrics`) turns an error table into the summary numbers;
  :func:`write_report` (from :mod:`auxtrain.report`) writes the CSV / JSON / Markdown / PNG files.
* :func:`generate_corrupted_testset` builds a cached -C set from any clean test set.
* :func:`run_eval` runs the ``eval`` command from its config object (:mod:`auxtrain.eval_config`);
  ``make-c`` is :mod:`auxtrain.make_c_command`.

Example::

    from auxtrain import evaluation
    from auxtrain.export import load_model

    model = load_model("runs/c100/model_plain.pt")
    result = evaluation.evaluate(model, "data/CIFAR-100-C", out_dir="reports/c100")
    print(result.summary["mce"])
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from auxtrain._eval_data import Clean, clean_set, count_correct, image_set, test_split, to_nchw
from auxtrain.data.corrupted import FLAGS, LABELS_FILE, FolderCorruptedSet, open_corrupted
from auxtrain.distributed import DistContext, all_gather_object, process_group, resolve_device, shard
from auxtrain.metrics import mce as mce
from auxtrain.report import build_summary
from auxtrain.report import read_errors as read_errors
from auxtrain.report import write_report as write_report
from corruptions import parse_severities, resolve_names

if TYPE_CHECKING:
    from auxtrain.eval_config import EvalConfig

__all__ = ["COLUMNS", "EvalResult", "evaluate", "corruption_errors", "accuracy", "mce",
           "write_report", "read_errors", "generate_corrupted_testset", "seen_corruptions", "run_eval"]

COLUMNS = ("corruption", "severity", "error", "n")
CACHE_DIR = "corrupted_test"  # where evaluate() caches a generated -C set inside its out_dir


@dataclass
class EvalResult:
    """What :func:`evaluate` measured: the error table, its summary, and where things are."""

    errors: pd.DataFrame        # columns corruption, severity, error (percent), n; clean row first
    summary: dict[str, Any]     # the numbers of :func:`auxtrain.metrics.mce` (+ title, missing_requested)
    out_dir: Path | None        # the report folder (None: no files were written)
    root: Path                  # the -C set evaluated (a generated one lives in out_dir/corrupted_test)
    errors_bn_adapted: pd.DataFrame | None = None  # with bn_adapt: the same table, BN-adapted statistics


def _device(device: str | torch.device | None, model: nn.Module | None = None) -> torch.device:
    """``device`` resolved by :func:`auxtrain.distributed.resolve_device`; None = the model's device."""
    if device is None:
        p = next(iter(model.parameters()), None) if model is not None else None
        return p.device if p is not None else torch.device("cpu")
    try:
        return resolve_device(device)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--device {device!r}: {exc}") from None


def _severities(spec: str | int | Sequence[int] | None, flags: Mapping[str, str]):
    return None if spec is None else parse_severities(spec, what=flags["severities"])


def accuracy(model: nn.Module, images: Any, labels: Any, batch_size: int = 256,
             device: str | torch.device | None = None) -> float:
    """Top-1 accuracy (percent) of ``model`` on uint8 images: numpy (N, H, W, 3) or tensor (N, 3, H, W)."""
    dev = _device(device, model)
    dataset = image_set(images, labels, "images")
    model = model.to(dev).eval()
    [(correct, n)] = count_correct(model, [dataset], batch_size, dev)
    return 100.0 * correct / max(n, 1)


def corruption_errors(
    model: nn.Module,
    root: str | os.PathLike,
    corruptions: str | Sequence[str] | None = None,
    severities: str | Sequence[int] | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    clean: Clean | None = None,
    progress: bool = True,
    *,
    workers: int = 0,
    flags: Mapping[str, str] | None = None,
    distributed: DistContext | None = None,
    bn_prior: float | None = None,
) -> pd.DataFrame:
    """Top-1 error (percent) of ``model`` per (corruption, severity) of the -C set at ``root``.

    Args:
        model: any module taking float images (N, 3, H, W) in [0, 1] (``load_model`` returns one).
            It is put in eval mode and on ``device`` (its training flag is restored afterwards).
        root: a CIFAR-C folder (NAME.npy + labels.npy, memory-mapped and streamed) or an ImageNet-C
            style tree (corruption/severity/class/image); detected from its contents.
        corruptions: names, a family, "common"/"extra"/"all", a comma list or a sequence of these,
            or None for every file found. A token outside the vocabulary must be a file or folder
            name of ``root`` (a custom corruption); anything else raises ValueError. Requested names
            absent from ``root`` are listed in ``errors.attrs["missing"]``.
        severities: subset of severities, ints or a string like "1-5" / "1,3" (default: all in the set).
        batch_size: images per forward pass.
        device: "cpu", "cuda", "auto", a torch.device, or None (the model's device).
        clean: the clean test set, adding the row ("clean", 0): ``(images, labels)`` with uint8
            images as numpy (N, H, W, 3) or a tensor (N, 3, H, W); a ``.npy`` path of uint8
            (N, H, W, 3) images labelled by the set's labels.npy; or a class/image folder.
            Default: ``root/clean.npy`` when present (``generate_corrupted_testset`` writes it).
        progress: show a progress bar over corruptions x severities.
        workers: DataLoader worker processes decoding image files (a ``.npy`` set is always read
            in this process: a memory-map slice is cheaper than sending it from a worker).
        flags: how the options are named in error messages, keys "root", "corruptions",
            "severities" (default: the ``auxtrain eval`` flags --data-root, --corruptions, ...).
        distributed: under torchrun, the context of :func:`auxtrain.distributed.init_distributed`:
            every rank evaluates its share of the sets and every rank gets the whole table.
        bn_prior: None for the model's running BN statistics; a prior N (0 to inf) for test-time
            BN adaptation (:mod:`auxtrain.bn_adapt`), recorded in ``errors.attrs["bn_statistics"]``.

    Returns:
        DataFrame with columns corruption, severity, error, n (clean row first when present).
    """
    flags = {**FLAGS, **(flags or {})}
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    data = open_corrupted(root, corruptions, _severities(severities, flags), flags)
    _check_classes(data, model, root)
    dev = _device(device, model)
    jobs = [(name, s, data.subset(name, s)) for name in data.names for s in data.severities]
    cleaned = clean_set(clean, data)
    if cleaned is not None:
        jobs.insert(0, ("clean", 0, cleaned))
    from tqdm.auto import tqdm

    ctx = distributed or DistContext()
    mine = shard(list(range(len(jobs))), ctx)
    bar = tqdm(total=len(mine), desc="eval", unit="set", disable=not progress or not ctx.is_main)

    def show(k: int) -> None:
        if k < len(mine):
            name, severity, _ = jobs[mine[k]]
            bar.set_postfix_str(name if severity == 0 else f"{name} s{severity}")

    def done(k: int) -> None:
        bar.update()
        show(k + 1)

    show(0)

    was_training = model.training
    model = model.to(dev).eval()
    from auxtrain.bn_adapt import bn_adapted, describe

    try:
        with bn_adapted(model, bn_prior) if bn_prior is not None else contextlib.nullcontext():
            counts = count_correct(model, [jobs[k][2] for k in mine], batch_size, dev,
                                   workers if isinstance(data, FolderCorruptedSet) else 0, on_block=done)
    finally:
        bar.close()
        model.train(was_training)
    parts = all_gather_object(list(zip(mine, counts, strict=True)), ctx)
    gathered = dict(kv for part in parts for kv in part)
    counts = [gathered[k] for k in range(len(jobs))]
    rows = [(name, severity, 100.0 * (1 - correct / n), n)
            for (name, severity, _), (correct, n) in zip(jobs, counts, strict=True) if n]
    errors = pd.DataFrame(rows, columns=list(COLUMNS))
    errors.attrs["missing"] = list(data.missing)
    errors.attrs["root"] = str(root)
    errors.attrs["bn_statistics"] = "running" if bn_prior is None else describe(bn_prior, batch_size)
    return errors


def _check_classes(data: Any, model: nn.Module, root: str | os.PathLike) -> None:
    """Labels of the -C set within the classes of ``model`` (when its export metadata records them).

    A label the model cannot predict counts as an error on every image, so a -C set of another
    dataset would report near-100% errors that look like a result; this is an error instead.
    """
    num_classes = (getattr(model, "meta", None) or {}).get("num_classes")
    if not isinstance(num_classes, int):
        return
    if isinstance(data, FolderCorruptedSet):
        if data.classes is not None and len(data.classes) > num_classes:
            raise ValueError(f"{root} has {len(data.classes)} class folders but the model predicts "
                             f"{num_classes} classes; evaluate on a -C set of the dataset the model was "
                             "trained on")
        return
    labels = data.labels
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = sorted({int(v) for v in labels[(labels < 0) | (labels >= num_classes)].tolist()})
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise ValueError(f"{Path(root) / LABELS_FILE} holds labels outside the model's {num_classes} "
                         f"classes (0 to {num_classes - 1}): {shown}; evaluate on a -C set of the dataset "
                         "the model was trained on")


def generate_corrupted_testset(
    images: Any,
    labels: Any,
    cache_dir: str | os.PathLike,
    names: str | Sequence[str] | None = None,
    severities: str | Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    *,
    flags: Mapping[str, str] | None = None,
    distributed: bool = False,
) -> Path:
    """A -C set of ``images`` in ``cache_dir`` (CIFAR-C layout, plus ``clean.npy``); cached.

    Calls :func:`corruptions.make_c` with a fixed ``seed``: files already complete for the same
    images, seed and severities are reused, so a second call costs only a hash of the images.
    Images are uint8 numpy (N, H, W, 3) or a uint8 tensor (N, 3, H, W); ``names`` is a corruption
    spec (:func:`corruptions.resolve_names`, None = all 19) and ``severities`` a severity spec.
    With ``distributed`` the ranks of the torch.distributed group share the work (see make_c).
    Returns ``cache_dir``.
    """
    from corruptions import make_c

    flags = {**FLAGS, **(flags or {})}
    nhwc = to_nchw(images, "images").permute(0, 2, 3, 1).contiguous().numpy()
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    out = make_c(nhwc, labels, cache_dir, names=resolve_names(names, what=flags["corruptions"]),
                 severities=parse_severities(severities, what=flags["severities"]), seed=seed,
                 device=device, progress=progress, distributed=distributed)
    return Path(out)


def seen_corruptions(meta: Mapping[str, Any]) -> list[str] | None:
    """Corruption names a model was trained on, from its export metadata (None if not recorded)."""
    if "seen_corruptions" in meta:
        return list(meta["seen_corruptions"])
    spec = meta.get("corruptions")
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = [] if spec in ("", "none") else [item.split("+") for item in spec.split(",")]
    items = [item for branch in spec for item in ([branch] if isinstance(branch, str) else branch)]
    return resolve_names(items, what="the model's corruptions") if items else []


def evaluate(
    model: nn.Module,
    root: str | os.PathLike | None = None,
    *,
    generate_from: tuple[Any, Any] | None = None,
    cache_dir: str | os.PathLike | None = None,
    corruptions: str | Sequence[str] | None = None,
    severities: str | Sequence[int] | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    workers: int = 0,
    progress: bool = True,
    clean: Clean | None = None,
    baseline: pd.DataFrame | str | os.PathLike | None = None,
    seen: Sequence[str] | None = None,
    title: str = "Corruption robustness",
    out_dir: str | os.PathLike | None = None,
    flags: Mapping[str, str] | None = None,
    distributed: DistContext | None = None,
    bn_adapt: bool = False,
    bn_prior: float = 16.0,
) -> EvalResult:
    """Errors of ``model`` on a -C set, the summary, and (with ``out_dir``) the report files.

    The -C set is ``root`` or, with ``generate_from=(images, labels)`` (uint8 numpy NHWC or tensor
    NCHW images), one generated from those clean images with the fixed ``seed`` and cached in
    ``cache_dir`` (default ``out_dir/corrupted_test``; reused when complete); its ``clean.npy``
    then gives the clean row. ``corruptions``, ``severities``, ``batch_size``, ``device``,
    ``workers``, ``clean`` and ``progress`` are those of :func:`corruption_errors` (generating:
    ``corruptions`` None = all 19, ``severities`` None = 1-5). ``baseline`` (an error table, report
    folder or errors.csv) adds the normalised and relative mCE, ``seen`` (trained-on corruption
    names) the seen/unseen means; ``title`` heads the report. ``flags`` names the options in
    error messages (keys root, corruptions, severities). The baseline is read before any compute,
    so a bad path fails fast; report files are written only after every number is known.
    ``distributed`` (under torchrun): the ranks share the generation and the sets, and rank 0
    alone writes the report (the other ranks get ``out_dir`` None).
    ``bn_adapt`` evaluates a second time with test-time BN adaptation of prior ``bn_prior``
    (:mod:`auxtrain.bn_adapt`) and reports those numbers beside, never instead of, the standard ones.
    """
    ctx = distributed or DistContext()
    flags = {**FLAGS, **(flags or {})}
    if (root is None) == (generate_from is None):
        raise ValueError(f"pass either {flags['root']} (an existing -C set) or clean images to generate "
                         f"one from, not {'both' if root is not None else 'neither'}")
    base = read_errors(baseline) if baseline is not None else None
    if bn_adapt:  # a model without BN, or a bad prior, fails before any compute
        from auxtrain.bn_adapt import adaptable_layers

        adaptable_layers(model, bn_prior)
    if generate_from is not None:
        if cache_dir is None and out_dir is None:
            raise ValueError("generating a -C set needs cache_dir or out_dir to cache it in")
        cache = Path(cache_dir) if cache_dir is not None else Path(out_dir) / CACHE_DIR
        images, labels = generate_from
        root = generate_corrupted_testset(images, labels, cache, names=corruptions,
                                          severities="1-5" if severities is None else severities,
                                          seed=seed, device=_device(device, model), progress=progress,
                                          flags=flags, distributed=ctx.enabled)
    errors = corruption_errors(model, root, corruptions, severities, batch_size, device, clean, progress,
                               workers=workers, flags=flags, distributed=ctx)
    adapted = None if not bn_adapt else corruption_errors(
        model, root, corruptions, severities, batch_size, device, clean, progress, workers=workers,
        flags=flags, distributed=ctx, bn_prior=bn_prior)
    if not ctx.is_main:
        out_dir = None
    if out_dir is not None:
        summary = write_report(errors, out_dir, baseline=base, seen=seen, title=title, bn_adapted=adapted)
    else:
        summary = build_summary(errors, baseline=base, seen=seen, title=title, bn_adapted=adapted)
    return EvalResult(errors, summary, None if out_dir is None else Path(out_dir), Path(root), adapted)


def run_eval(cfg: EvalConfig) -> EvalResult:
    """``auxtrain eval``: load ``cfg.checkpoint``, find or generate the -C set and the clean set, evaluate.

    Everything that can fail on the user's input (missing options, the baseline, the device, the
    model file, a class-count mismatch) fails before the long part, and the report files are
    written only at the end, so a failure leaves an existing report untouched.
    """
    from auxtrain.eval_model import describe, load_eval_model

    cfg.check()
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; pass a folder")
    baseline = read_errors(cfg.baseline) if cfg.baseline else None
    with process_group(cfg.device) as (ctx, device):
        model = load_eval_model(cfg, device)  # --checkpoint, or --model with --weights
        source = cfg.checkpoint or cfg.weights
        clean: Clean | None = cfg.clean_root
        generate_from = None
        if cfg.generate or cfg.clean_dataset:
            name = cfg.dataset if cfg.generate else cfg.clean_dataset
            images, labels, spec = test_split(name, cfg.data_root if cfg.generate else cfg.clean_root,
                                              cfg.data_seed, cfg.test_size if cfg.generate else None)
            if spec.num_classes != model.meta["num_classes"]:
                raise ValueError(f"{source} predicts {model.meta['num_classes']} classes but {name} "
                                 f"has {spec.num_classes}; evaluate on the dataset the model was trained on")
            clean = (images, labels)
            if cfg.generate:
                generate_from = (images, labels)
        return evaluate(model, None if cfg.generate else cfg.data_root, generate_from=generate_from,
                        corruptions=cfg.corruptions, severities=cfg.severities, seed=cfg.seed,
                        batch_size=cfg.batch_size, device=device, workers=cfg.workers,
                        progress=cfg.progress, clean=clean, baseline=baseline,
                        seen=seen_corruptions(model.meta),
                        title=cfg.title or f"Corruption robustness of {describe(model) or source}",
                        out_dir=out, distributed=ctx, bn_adapt=cfg.bn_adapt, bn_prior=cfg.bn_prior)

