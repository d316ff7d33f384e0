"""The corruption registry: names, families, severity tables and batched kernels.

Every corruption is declared once, by ``register``, next to its kernel. The tables are data:
``cifar`` holds the CIFAR-C parameters (32 px, from hendrycks/robustness make_cifar_c.py) and
``imagenet`` the ImageNet-C ones (224 px), one tuple per severity 1..5.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

# A kernel corrupts a float32 batch (n, 3, H, W) with values in [0, 1] on any device.
# ``params`` is the parameter tuple of ONE severity (already resolved for the image size by the
# profile, see ``corruptions._params``), shared by the n images; random draws are per image and
# come from ``generator`` only. It returns the corrupted batch on the same 0..1 scale, NOT yet
# clipped or quantised (the caller clips to [0, 1] and, for uint8 output, truncates x*255 like
# the reference's np.uint8 cast). A kernel may quantise internally where the reference does.
Kernel = Callable[[torch.Tensor, tuple, "torch.Generator | None"], torch.Tensor]


@dataclass(frozen=True)
class CorruptionSpec:
    name: str
    family: str  # noise | blur | weather | digital
    benchmark: bool  # True for the 15 benchmark corruptions, False for the 4 extra
    cifar: tuple[tuple, ...]  # severity 1..5 parameter tuples at 32 px
    imagenet: tuple[tuple, ...]  # severity 1..5 parameter tuples at 224 px
    kernel: Kernel
    # Which parameter positions are integers (rounded after interpolation), e.g. iterations.
    integer_params: tuple[int, ...] = ()
    # Which parameters do not scale with the image size, vs those that do (see _params).
    deterministic: bool = False  # True when the output depends on no random draw


_REGISTRY: dict[str, CorruptionSpec] = {}


def register(
    name: str,
    *,
    family: str,
    benchmark: bool,
    cifar: Sequence[tuple],
    imagenet: Sequence[tuple],
    integer_params: Sequence[int] = (),
    deterministic: bool = False,
) -> Callable[[Kernel], Kernel]:
    """Decorator declaring a corruption's kernel and its severity tables."""

    def decorate(kernel: Kernel) -> Kernel:
        if name in _REGISTRY:
            raise ValueError(f"corruption {name!r} registered twice")
        if len(cifar) != 5 or len(imagenet) != 5:
            raise ValueError(f"corruption {name!r} needs 5 severities in each table")
        _REGISTRY[name] = CorruptionSpec(
            name, family, benchmark, tuple(map(tuple, cifar)), tuple(map(tuple, imagenet)),
            kernel, tuple(integer_params), deterministic,
        )
        return kernel

    return decorate


def get_spec(name: str) -> CorruptionSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        valid = ", ".join(sorted(_REGISTRY))
        raise ValueError(
            f"corruption_name={name!r} is not a known corruption; use one of: {valid}"
        ) from None
