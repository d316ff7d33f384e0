"""``auxtrain make-c``: a CIFAR-C layout set of a dataset's test split (:func:`corruptions.make_c`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from auxtrain._eval_data import test_split
from auxtrain.distributed import process_group
from auxtrain.eval_config import MakeCConfig
from corruptions import parse_severities, resolve_names

__all__ = ["MakeCResult", "make_c_from_dataset"]


@dataclass
class MakeCResult:
    """What :func:`make_c_from_dataset` wrote into ``out_dir``."""

    out_dir: Path
    names: list[str]             # the corruption files, in canonical order
    severities: tuple[int, ...]  # the severity blocks of each file, in file order
    num_images: int              # clean test images per severity block
    is_main: bool = True         # False on the ranks > 0 of a torchrun job (rank 0 reports)


def make_c_from_dataset(cfg: MakeCConfig) -> MakeCResult:
    """``auxtrain make-c``: write a CIFAR-C layout set of ``cfg.dataset``'s test split to ``cfg.out``.

    The test images are those of ``fit --test-size N --data-seed S`` (:func:`auxtrain.data.run_splits`).
    A rerun with the same options verifies and skips the complete files (see
    :func:`corruptions.make_c`). Under torchrun the processes share the cells of every file.
    Warns when the set does not have RobustBench's 10,000 images x severities 1-5.
    """
    import warnings

    from corruptions import make_c
    from corruptions.make_c import ROBUSTBENCH_IMAGES

    cfg.check()
    names = resolve_names(cfg.corruptions, what="--corruptions")
    severities = parse_severities(cfg.severities, what="--severities")
    with process_group(cfg.device) as (ctx, device):
        images, labels, _ = test_split(cfg.dataset, cfg.data_root, cfg.data_seed, cfg.test_size)
        n = int(images.shape[0])
        if ctx.is_main and (n != ROBUSTBENCH_IMAGES or tuple(severities) != (1, 2, 3, 4, 5)):
            warnings.warn(f"{cfg.out} holds {n:,} images x severities {','.join(map(str, severities))}: "
                          f"RobustBench's CIFAR-C loader (robustbench.data.load_cifar10c) reads rows "
                          f"(s - 1) * 10,000 to s * 10,000 for severity s, so it needs 10,000 images x "
                          f"severities 1-5; auxtrain eval reads any size", stacklevel=2)
        out = make_c(images, labels.numpy(), cfg.out, names=names, severities=severities, seed=cfg.seed,
                     device=device, profile=cfg.profile, threads=cfg.threads, progress=cfg.progress,
                     distributed=ctx.enabled)
        return MakeCResult(Path(out), names, severities, n, ctx.is_main)
