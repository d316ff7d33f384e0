"""The two-stage auxiliary training run: ``fit(TrainConfig(...)) -> RunResult``.

One step flows one way: a clean uint8 batch -> a random crop and flip -> K corrupted views of it
(pixel-aligned; ``--view-order``) -> AuxiliaryModel
(which normalises its input itself), as one stacked batch [clean; view_1; ...; view_K] or one pass
per domain (``--domain-passes``) -> AuxiliaryLoss (with the tying and companion weights of
:class:`~auxtrain.schedule.TrainingSchedule`) -> SGD. The step itself and the batches built ahead
in a background thread live in :mod:`auxtrain.train_step`, what each mode feeds it in
:mod:`auxtrain.modes`, the export and the final report in :mod:`auxtrain.run_outputs`; this
module keeps the loop.
``mode="augment"`` is the naive baseline (the views join the main head's batch, no auxiliary
heads), ``mode="augmix"`` the AugMix baseline (two AugMix views join it, with the Jensen-Shannon
loss) and ``corruptions="none"`` is standard training.

Every random choice comes from a generator seeded by (seed, epoch, rank) and the data order is a
function of (seed, epoch), so a run resumed from its per-epoch checkpoint replays the interrupted
epoch exactly: on CPU, the final weights are bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import corruptions
from auxtrain import distributed as D
from auxtrain._stop import StopFlag
from auxtrain.checkpoint import load_checkpoint, restoring, save_checkpoint
from auxtrain.losses import LOSS_TERMS
from auxtrain.modes import step_inputs, step_loss
from auxtrain.resume_options import RESUMABLE_CHANGES, with_newer_options
from auxtrain.run_dir import RunDir
from auxtrain.run_log import BestModel, RunLog
from auxtrain.run_outputs import export_model
from auxtrain.schedule import TrainingSchedule
from auxtrain.seeding import mix_seed, seeded_generator
from auxtrain.train_config import DATASET_DEFAULTS, TrainConfig
from auxtrain.train_step import Batches, TrainStep, use_channels_last, use_separate_passes, use_views_ahead

__all__ = ["TrainConfig", "RunResult", "NonFiniteLossError", "fit", "DATASET_DEFAULTS"]


@dataclass
class RunResult:
    """What ``fit`` leaves behind."""

    run_dir: Path | None               # the run directory (None on ranks other than 0)
    model_path: Path | None            # the exported plain model (model_plain.pt)
    test_acc: float                    # clean accuracy (percent) of the final model on the test split
    #                                    (on the validation split when val_size is set)
    metrics: list[dict[str, Any]] = field(default_factory=list)  # the metrics.csv rows of this run
    report: Any = None                 # corruption errors (pandas.DataFrame) when evaluation ran
    model: torch.nn.Module | None = None  # the trained plain model (eval mode, CPU), on every rank
    seconds: float = 0.0               # wall time of this call


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stops, keeping its last good checkpoint if it has one."""


def fit(config: TrainConfig, *, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> RunResult:
    """Train according to ``config``, write the run directory and return a ``RunResult``.

    ``on_epoch(row)`` is called on rank 0 after each epoch with that epoch's metrics row.
    Raises ValueError for bad options or inputs (before anything is written), NonFiniteLossError
    if the loss diverges, and KeyboardInterrupt after saving a resumable checkpoint on Ctrl-C.
    """
    from auxtrain import data

    t_start = time.time()
    cfg = config.resolved()
    ctx, device = D.init_distributed(cfg.device)
    run = None
    try:
        cfg.out = D.broadcast_object(cfg.out, ctx)  # a default name carries rank 0's timestamp
        if cfg.amp == "fp16" and device.type != "cuda":
            raise ValueError("amp='fp16' needs CUDA; use --amp bf16 on CPU or no --amp")
        if cfg.batch_size % ctx.world_size:
            raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the {ctx.world_size} "
                             "processes")
        # Check the run directory and read the checkpoint (rank 0) before anything is built or written.
        run, ckpt = D.run_on_main(lambda: _open_run(cfg), ctx)
        branches = data.parse_branches(cfg.corruptions)  # [] for "none"
        if cfg.mode == "augmix":  # the two AugMix views of the JSD loss, through the main head
            branches = [("augmix",), ("augmix",)]
        severities = corruptions.parse_severities(cfg.severities, what="--severities")
        train_ds, test_ds, spec = _datasets(cfg)
        schedule = _schedule(cfg)
        job = _build(cfg, ctx, device, spec, num_branches=len(branches) if cfg.mode == "auxiliary" else 0)
        start_epoch, start_step, sums, gen_state = 0, 0, None, None
        if ckpt is not None:
            with restoring(Path(cfg.out) / RunDir.CHECKPOINT):
                job.load_state(ckpt)
            start_epoch, start_step, sums = ckpt["epoch"], ckpt["step"], ckpt.get("sums")
            gen_state = ckpt["rng"].get("generator")
        if ctx.is_main:
            run.prepare(completed_epochs=start_epoch if ckpt is not None else None)
            run.write_config(dataclasses.asdict(cfg), seed=cfg.seed, world_size=ctx.world_size,
                             branches=[list(b) for b in branches], **job.notes)
        D.barrier(ctx)
        log = RunLog(run.path if ctx.is_main else None, interval=cfg.log_interval, logger=cfg.logger,
                     progress=cfg.progress, epochs=cfg.epochs, resume=cfg.resume, enabled=ctx.is_main)
        best = BestModel(run.path, resume=cfg.resume) if ctx.is_main else None

        test_loader = data.make_loader(test_ds, 256, shuffle=False, seed=cfg.seed, epoch=0,
                                       workers=cfg.workers, drop_last=False, pin_memory=device.type == "cuda")
        stop = StopFlag(enabled=not ctx.enabled)
        metrics: list[dict[str, Any]] = []
        test_acc = math.nan
        try:
            for epoch in range(start_epoch, cfg.epochs):
                t0 = time.time()
                loader = _train_loader(cfg, ctx, train_ds, epoch, device)
                # Every random choice of the epoch (crops, flips, corruptions) comes from this generator.
                gen = seeded_generator(mix_seed(cfg.seed, epoch, ctx.rank), device)
                if gen_state is not None:  # resuming mid-epoch after Ctrl-C: continue the saved stream
                    gen.set_state(gen_state)
                sums = sums or {"n": 0.0, "correct": 0.0, "loss": 0.0}
                step_log = log.steps(len(loader), sums, epoch, skip=start_step,
                                     lr=functools.partial(schedule.lr, epoch))
                step = _train_epoch(job, loader, gen, sums, skip=start_step, epoch=epoch, schedule=schedule,
                                    branches=branches, severities=severities, stop=stop, step_log=step_log)
                start_step, gen_state = 0, None
                if stop.requested:  # Ctrl-C: save where we are (resumable mid-epoch) and leave
                    _save(run, job, cfg, epoch, step, gen, sums)
                    raise KeyboardInterrupt
                total = dict(zip(sums, D.all_reduce_sum(list(sums.values()), ctx, device), strict=True))
                if ctx.is_main:
                    test_acc = _accuracy(job, test_loader)
                    # The LR of the epoch's last step: during warm-up it is below epoch_lr(epoch).
                    row = {"epoch": epoch + 1, "lr": schedule.lr(epoch, len(loader) - 1, len(loader)),
                           "stage": schedule.stage(epoch),
                           "loss": total["loss"] / total["n"],
                           **{k: total[k] / total["n"] for k in LOSS_TERMS if k in total},
                           "train_acc": 100 * total["correct"] / total["n"], "test_acc": test_acc,
                           "seconds": round(time.time() - t0, 2)}
                    run.append_metrics(row)
                    _save(run, job, cfg, epoch + 1, 0, None, None)
                    metrics.append(row)
                    log.epoch(row)
                    if cfg.val_size:  # model_best.pt by validation accuracy
                        best.update(test_acc, epoch + 1, lambda path, extra: export_model(
                            cfg, job.spec, branches, path, job.net.strip(), extra["best_val_acc"], extra))
                    if on_epoch is not None:
                        on_epoch(row)
                sums = None
                D.barrier(ctx)
        finally:
            stop.restore()
            log.close()

        # Export the plain model, then measure its robustness (rank 0 only).
        result = RunResult(run_dir=None, model_path=None, test_acc=test_acc, metrics=metrics,
                           model=job.net.strip().cpu().eval())
        if ctx.is_main:
            result = _finish(cfg, run, job, branches, test_ds, test_loader, result)
        D.barrier(ctx)
    finally:
        if run is not None and ctx.is_main:
            run.release()  # the run directory's lock, taken by run.prepare()
        D.shutdown(ctx)
    result.seconds = time.time() - t_start
    return result


@dataclass
class _Job:
    """The model and optimisation state of a run, and how to run it on the device."""

    cfg: TrainConfig
    spec: Any                          # DatasetSpec: classes, normalisation
    device: torch.device
    net: Any                           # AuxiliaryModel (unwrapped: state dicts, heads, eval)
    train_net: Any                     # what the step calls: net, or its DDP / compiled wrapper
    criterion: Any
    optimizer: torch.optim.Optimizer
    scaler: Any
    autocast: dict[str, Any]
    is_main: bool                      # rank 0: shows the progress bar
    step: TrainStep                    # forward (stacked or separate passes), loss, backward, update
    notes: dict[str, Any] = field(default_factory=dict)  # extra config.yaml entries (init weights, ...)

    def load_state(self, ckpt: dict[str, Any]) -> None:
        self.net.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt.get("scaler") or {})
        torch.set_rng_state(ckpt["rng"]["torch"])

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images on the device in the chosen memory format (the model normalises them)."""
        return self.step.format(images)


def _open_run(cfg: TrainConfig) -> tuple[RunDir, dict[str, Any] | None]:
    run = RunDir(cfg.out, resume=cfg.resume, overwrite=cfg.overwrite)
    if not cfg.resume:
        return run, None
    ckpt = load_checkpoint(run.checkpoint_path)
    old = with_newer_options(ckpt["config"])  # the values newer options had when the run trained
    # Options that change what is trained (the schedule follows from --epochs too) are the run's own.
    changed = sorted(k for k, v in old.items() if k not in RESUMABLE_CHANGES and getattr(cfg, k, v) != v)
    if changed:
        flags = [f"--{k.replace('_', '-')}" for k in changed]
        raise ValueError(
            f"--resume cannot change {', '.join(flags)}: the run in {cfg.out} was started with "
            + ", ".join(f"{flag} {old[k]} (asked: {getattr(cfg, k)})"
                        for flag, k in zip(flags, changed, strict=True))
            + f". Resume without {', '.join(flags)} to finish that run, or train with them in a new run "
            "(another --out)"
        )
    return run, ckpt


def _datasets(cfg: TrainConfig):
    """Train and test (or validation) datasets of clean uint8 images and their spec."""
    from auxtrain.data import run_splits

    # The data (shapes' images, the subsets) come from data_seed, not seed: runs of different seeds
    # train and test on the same images. imagefolder's seed drives its per-sample augmentation.
    data_seed = cfg.seed if cfg.dataset == "imagefolder" else cfg.data_seed
    train_ds, test_ds, spec = run_splits(cfg.dataset, cfg.data_root, train_size=cfg.train_size,
                                         test_size=cfg.test_size, val_size=cfg.val_size, data_seed=data_seed,
                                         download=cfg.download, image_size=cfg.image_size)
    if len(train_ds) < cfg.batch_size:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the {len(train_ds)} training images; "
                         "pass a smaller --batch-size")
    return train_ds, test_ds, spec


def _schedule(cfg: TrainConfig) -> TrainingSchedule:
    return TrainingSchedule(cfg.epochs, cfg.lr, cfg.schedule, cfg.warmup_epochs, cfg.stage_two_start,
                            cfg.gamma, cfg.companion_weight, cfg.companion_decay, cfg.tying_scale)


def _build(cfg: TrainConfig, ctx: D.DistContext, device: torch.device, spec, num_branches: int) -> _Job:
    """AuxiliaryModel (K heads, selective BN; K=0 for the baselines), loss, SGD, AMP scaler, wrappers."""
    from auxtrain.auxiliary import AuxiliaryModel
    from auxtrain.init_weights import parse_model_kwargs, start_weights
    from auxtrain.losses import AuxiliaryLoss
    from auxtrain.models import create_model

    torch.manual_seed(cfg.seed)
    companions = [s.strip() for s in cfg.companions.split(",")] if cfg.companions else None
    pretrained = (cfg.pretrained and not cfg.resume) or None  # None: not passed to the builder
    backbone = create_model(cfg.model, spec.num_classes, pretrained=pretrained,
                            **parse_model_kwargs(cfg.model_kwargs))
    notes = start_weights(backbone, cfg)  # config.yaml's record of --init / --pretrained
    net = AuxiliaryModel(backbone, num_branches, head=cfg.head,
                         running_stats=cfg.running_stats, companions=companions,
                         selective_bn=cfg.selective_bn, mean=spec.mean, std=spec.std).to(device)
    channels_last = use_channels_last(cfg.channels_last, device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    # The loss's constant weights are TrainConfig fields of the same names (alpha, beta, ...).
    criterion = AuxiliaryLoss(**{name: getattr(cfg, name) for name in AuxiliaryLoss.OPTIONS})
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    train_net = net
    if ctx.enabled:
        # Buffers are not broadcast: rank 0's running statistics come from its own batches either way.
        train_net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)
    if cfg.compile:
        train_net = torch.compile(train_net)
    autocast = {"device_type": device.type, "enabled": cfg.amp is not None,
                "dtype": torch.float16 if cfg.amp == "fp16" else torch.bfloat16}
    if cfg.selective_bn and not net.selective_bn:  # said in the run's config.yaml (and warned on stderr)
        notes["selective_bn"] = f"off: {type(backbone).__name__} has no BatchNorm2d layer"
    step = TrainStep(train_net, optimizer, scaler, autocast, channels_last=channels_last,
                     separate=use_separate_passes(cfg.domain_passes, device, net))
    return _Job(cfg, spec, device, net, train_net, criterion, optimizer, scaler, autocast, ctx.is_main, step,
                notes)


def _train_loader(cfg: TrainConfig, ctx: D.DistContext, train_ds, epoch: int, device: torch.device):
    """The epoch's loader: order fixed by (seed, epoch); under torchrun each rank gets its shard."""
    from auxtrain.data import make_loader

    sampler = None
    if ctx.enabled:
        sampler = torch.utils.data.DistributedSampler(train_ds, ctx.world_size, ctx.rank, shuffle=True,
                                                      seed=cfg.seed, drop_last=True)
        sampler.set_epoch(epoch)
    if hasattr(train_ds, "set_epoch"):  # datasets that augment per sample (imagefolder)
        train_ds.set_epoch(epoch)
    return make_loader(train_ds, cfg.batch_size // ctx.world_size, shuffle=sampler is None, seed=cfg.seed,
                       epoch=epoch, workers=cfg.workers, drop_last=True, sampler=sampler,
                       pin_memory=device.type == "cuda")


def _train_epoch(job: _Job, loader, gen: torch.Generator, sums: dict[str, float], *, skip: int, epoch: int,
                 schedule: TrainingSchedule, branches, severities, stop: StopFlag, step_log=None) -> int:
    """Train one epoch from batch ``skip`` on, adding to ``sums``; returns the next batch index."""
    cfg, net = job.cfg, job.net
    net.train()
    bar = tqdm(total=len(loader), initial=skip, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
               disable=not (cfg.progress and job.is_main), dynamic_ncols=True)
    loss = step_loss(cfg, net, job.criterion, schedule, epoch, num_views=len(branches))
    batches = Batches(loader, step_inputs(cfg, branches, severities), gen, job.device, skip=skip,
                      background=use_views_ahead(cfg.views_ahead, job.device))
    step = skip
    try:
        for step, inputs, target in batches:  # noqa: B007 (step is returned)
            if stop.requested:
                batches.rewind()  # the generator as it was before this (untrained) batch's draws
                break
            for group in job.optimizer.param_groups:
                group["lr"] = schedule.lr(epoch, step, len(loader))
            result = job.step(inputs, target, loss)
            if not result.finite:
                raise NonFiniteLossError(f"loss became {result.loss.item()} at epoch {epoch + 1}, step "
                                         f"{step + 1}; stopped. {_diverged_advice(cfg.out)}")
            b = target.shape[0]
            sums["n"] += b
            sums["correct"] += (result.out.main[:b].argmax(1) == target).sum().item()
            sums["loss"] += result.loss.item() * b
            for k, v in result.terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * b
            bar.update(1)
            if step_log is not None:
                step_log.trained(step, b)
            n = sums["n"]
            bar.set_postfix(loss=f"{sums['loss'] / n:.3f}", acc=f"{100 * sums['correct'] / n:.1f}")
        else:
            step = len(loader)
    finally:
        batches.close()
        bar.close()
    return step


def _diverged_advice(out: str) -> str:
    """What is left of a diverged run in ``out`` and what to type: only a checkpoint that exists is named."""
    if (Path(out) / RunDir.CHECKPOINT).is_file():
        return (f"The last good checkpoint, {Path(out) / RunDir.CHECKPOINT}, is kept. Lower --lr, or drop "
                "--amp, in a new run (another --out, or --overwrite)")
    return (f"No checkpoint was written (it is saved at the end of each epoch), so there is nothing to "
            f"resume: lower --lr, or drop --amp, and start again with --overwrite --out {out}")


def _save(run: RunDir, job: _Job, cfg: TrainConfig, epoch: int, step: int, gen: torch.Generator | None,
          sums: dict | None) -> None:
    """Checkpoint: continue at 0-based ``epoch``, batch ``step``; mid-epoch also the generator and sums."""
    rng = {"torch": torch.get_rng_state()}
    if gen is not None:
        rng["generator"] = gen.get_state().cpu()
    save_checkpoint(run.checkpoint_path, {
        "epoch": epoch, "step": step, "model": job.net.state_dict(), "optimizer": job.optimizer.state_dict(),
        "scaler": job.scaler.state_dict(), "config": dataclasses.asdict(cfg), "rng": rng, "sums": sums,
    })


@torch.no_grad()
def _accuracy(job: _Job, loader) -> float:
    """Top-1 accuracy (percent) of the main head on clean images."""
    job.net.eval()
    correct = total = 0
    for images, target in loader:
        with torch.autocast(**job.autocast):
            logits = job.net(job.inputs(images.to(job.device)))
        correct += (logits.argmax(1).cpu() == target).sum().item()
        total += target.shape[0]
    job.net.train()
    return 100.0 * correct / max(total, 1)


def _finish(cfg: TrainConfig, run: RunDir, job: _Job, branches, test_ds, test_loader, result: RunResult):
    """Export the plain model and, if asked, write the robustness report into the run directory."""
    from auxtrain.run_outputs import export_model, robustness_report

    if math.isnan(result.test_acc):  # resumed after the last epoch: measure again
        result.test_acc = _accuracy(job, test_loader)
    export_model(cfg, job.spec, branches, run.model_path, result.model, result.test_acc)
    result.run_dir, result.model_path = run.path, run.model_path
    if cfg.eval:
        result.report = robustness_report(cfg, run.model_path, run.path, test_ds, job.device, branches)
    return result
