"""The corruption registry: names, families, severity tables and batched kernels.

Every corruption is declared once, by ``register``, next to its kernel in one of the kernel
modules (noise.py, blur.py, weather.py, digital.py, color.py, geometric.py); the image filters and
library ports those kernels share live in private modules (``_filters``, ``_zoom``, ``_cv_ports``,
``_pil_resize``, ``_frost_textures``). Names and families are declared here, in ``FAMILIES``, by
name and in the canonical CIFAR-C order; ``register`` looks a corruption's family up there
(``family=`` and ``benchmark=`` may be omitted, and must agree with ``FAMILIES`` when given).

Severity tables are data: ``cifar`` holds the CIFAR-C parameters (32 px, from hendrycks/robustness
make_cifar_c.py) and ``imagenet`` the ImageNet-C ones (224 px), one entry per severity 1..5. An
entry is a tuple of parameters, or a scalar (wrapped into a 1-tuple); parameters need not be
numbers. ``interpolation=`` says, per parameter position, how image sizes between 32 and 224 px
interpolate the two tables ("auto", "linear", "log" or "nearest"; non-numbers always use
"nearest"; see ``corruptions._params``), and ``integer_params`` which positions are rounded to
ints afterwards.

Kernel contract:

- ``<name>_tensor(x, params, generator) -> Tensor``. ``x`` is a contiguous float32 batch
  (n, 3, H, W) with values in [0, 1], on any device, n >= 1, H, W >= 8. It is a private copy:
  the kernel may modify it in place and may return it.
- ``params`` is the parameter tuple of ONE severity, already resolved for the image size by the
  profile (see ``corruptions._params``), shared by the n images. A scalar table entry such as
  ``0.04`` arrives as the 1-tuple ``(0.04,)``; integer positions (``integer_params``) arrive as
  Python ints.
- ``generator`` is always a ``torch.Generator`` (never None: ``corrupt`` makes one). Every random
  draw comes from it, per image, made on the generator's device and then moved to ``x``'s device
  (use the helpers ``rand``, ``randn``, ``uniform``, ``normal``, ``randint``, ``poisson`` below),
  so a CPU generator gives the same output for CPU and CUDA data. Never touch the global RNG.
  The order of the draws is part of a kernel's output: changing it changes every seeded result.
- It returns the corrupted batch on the same 0..1 scale and device, NOT yet clipped or
  quantised: the caller clips to [0, 1] and, for uint8 output, truncates ``x * 255`` like the
  reference's ``np.uint8`` cast. A kernel may quantise internally where the reference does
  (e.g. glass_blur's uint8 cast, JPEG).

8-bit kernels (``register(..., uint8=True)``, for corruptions whose reference works on PIL uint8
images: jpeg_compression, pixelate) instead receive a uint8 batch (n, 3, H, W) 0..255 (float
input rounded to 8 bits first), which they must NOT modify in place, and return a uint8 batch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import torch

Kernel = Callable[[torch.Tensor, tuple, torch.Generator], torch.Tensor]

# The 15 benchmark corruptions by family, in the CIFAR-C / ImageNet-C order, then the 4 extra
# ("validation" in imagecorruptions). The order of the dict and of each tuple is the canonical
# order returned by get_corruption_names.
FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
    "extra": ("speckle_noise", "gaussian_blur", "spatter", "saturate"),
}
# The benchmark family each extra corruption resembles (how imagecorruptions describes them).
EXTRA_RESEMBLES: dict[str, str] = {
    "speckle_noise": "noise", "gaussian_blur": "blur", "spatter": "weather", "saturate": "digital",
}
BENCHMARK_FAMILIES: tuple[str, ...] = tuple(family for family in FAMILIES if family != "extra")
ALL_NAMES: tuple[str, ...] = tuple(name for names in FAMILIES.values() for name in names)
FAMILY_OF: dict[str, str] = {name: fam for fam, names in FAMILIES.items() for name in names}
INTERPOLATION_MODES = ("auto", "linear", "log", "nearest")


@dataclass(frozen=True)
class CorruptionSpec:
    name: str
    family: str  # noise | blur | weather | digital | extra
    benchmark: bool  # True for the 15 benchmark corruptions, False for the 4 extra
    cifar: tuple[tuple, ...]  # severity 1..5 parameter tuples at 32 px
    imagenet: tuple[tuple, ...]  # severity 1..5 parameter tuples at 224 px
    kernel: Kernel
    # Which parameter positions are integers (rounded after interpolation), e.g. iterations.
    integer_params: tuple[int, ...] = ()
    deterministic: bool = False  # True when the output depends on no random draw
    # How each parameter position is interpolated between the two tables (see _params).
    interpolation: tuple[str, ...] = ()
    uint8: bool = False  # the kernel takes and returns uint8 0..255 batches (see the contract above)


_REGISTRY: dict[str, CorruptionSpec] = {}


def _as_table(name: str, which: str, table: Sequence) -> tuple[tuple, ...]:
    rows = tuple(tuple(row) if isinstance(row, (tuple, list)) else (row,) for row in table)
    if len(rows) != 5:
        raise ValueError(f"corruption {name!r} needs 5 severities in its {which} table, got {len(rows)}")
    if len({len(row) for row in rows}) != 1:
        raise ValueError(f"corruption {name!r}: every row of its {which} table needs the same length")
    return rows


def register(
    name: str,
    *,
    cifar: Sequence,
    imagenet: Sequence,
    family: str | None = None,
    benchmark: bool | None = None,
    integer_params: Sequence[int] = (),
    deterministic: bool = False,
    interpolation: Sequence[str] | None = None,
    uint8: bool = False,
) -> Callable[[Kernel], Kernel]:
    """Decorator declaring a corruption's kernel and its severity tables."""
    if name not in FAMILY_OF:
        raise ValueError(f"corruption {name!r} is not declared in corruptions._registry.FAMILIES")
    table_family = FAMILY_OF[name]
    if family is not None and family not in (table_family, EXTRA_RESEMBLES.get(name)):
        raise ValueError(f"corruption {name!r} belongs to family {table_family!r}, not {family!r}")
    if benchmark is not None and benchmark != (table_family != "extra"):
        raise ValueError(f"corruption {name!r}: benchmark={benchmark} disagrees with FAMILIES")
    cifar_rows = _as_table(name, "cifar", cifar)
    imagenet_rows = _as_table(name, "imagenet", imagenet)
    width = len(cifar_rows[0])
    if len(imagenet_rows[0]) != width:
        raise ValueError(f"corruption {name!r}: the cifar and imagenet rows differ in length")
    modes = tuple(interpolation) if interpolation is not None else ("auto",) * width
    if len(modes) != width or any(m not in INTERPOLATION_MODES for m in modes):
        raise ValueError(
            f"corruption {name!r}: interpolation={interpolation!r} needs {width} modes from "
            f"{INTERPOLATION_MODES}"
        )

    def decorate(kernel: Kernel) -> Kernel:
        if name in _REGISTRY:
            raise ValueError(f"corruption {name!r} registered twice")
        _REGISTRY[name] = CorruptionSpec(
            name, table_family, table_family != "extra", cifar_rows, imagenet_rows,
            kernel, tuple(integer_params), deterministic, modes, bool(uint8),
        )
        return kernel

    return decorate


def get_spec(name: str) -> CorruptionSpec:
    """The registered spec of ``name``; ValueError listing the valid names otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        if not isinstance(name, str):
            raise TypeError(
                f"corruption_name must be a str, got {type(name).__name__}; use one of: "
                f"{', '.join(ALL_NAMES)}"
            ) from None
        if name in FAMILY_OF:
            raise ValueError(
                f"corruption_name={name!r} is declared but its kernel is not registered"
            ) from None
        raise ValueError(
            f"corruption_name={name!r} is not a known corruption; use one of: {', '.join(ALL_NAMES)}"
        ) from None


def registered_names() -> list[str]:
    """Names with a registered kernel, in canonical order."""
    return [name for name in ALL_NAMES if name in _REGISTRY]


# ---------------------------------------------------------------------------------------------
# Random draws for kernels: made on the generator's device, then moved to the data's device, so
# one CPU generator seed gives identical corruptions on CPU and CUDA.


# Values per chunk of a CPU draw (0.2-2 ms): a fixed size, so the output never depends on the thread count.
_CHUNK = 1 << 16


@lru_cache(maxsize=4)
def _pool(workers: int, pid: int) -> ThreadPoolExecutor:
    """Worker threads per process (threads do not survive fork, so a DataLoader child gets its own)."""
    return ThreadPoolExecutor(workers, thread_name_prefix="corruptions")


def map_on_threads(fn: Callable, items: Sequence, workers: int) -> list:
    """``[fn(item) for item in items]``, on ``workers`` threads when more than one (for ops that
    release the GIL but run on one core: libjpeg, torch's CPU random draws)."""
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    return list(_pool(workers, os.getpid()).map(fn, items))


def _draw(make: Callable[[int, int, torch.Generator], torch.Tensor], size: Sequence[int],
          generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    """A tensor of ``size`` on ``device`` from ``make(start, n, g)``: flat draws start..start+n-1 from g.

    torch draws from a CPU generator serially, on one core: for noise corruptions that is most of
    the cost. So CPU draws are cut into fixed chunks of ``_CHUNK`` values, each from its own
    generator seeded by one draw of ``generator``, made on torch.get_num_threads() threads: the
    output is a function of the generator state alone.
    """
    total = math.prod(size)
    if generator.device.type != "cpu":
        return make(0, total, generator).view(tuple(size)).to(device)
    starts = list(range(0, total, _CHUNK)) or [0]
    seeds = torch.randint(0, 2**62, (len(starts),), generator=generator).tolist()

    def chunk(job: tuple[int, int]) -> torch.Tensor:
        start, seed = job
        return make(start, min(_CHUNK, total - start), torch.Generator().manual_seed(seed))

    parts = map_on_threads(chunk, list(zip(starts, seeds, strict=True)), torch.get_num_threads())
    return torch.cat(parts).view(tuple(size)).to(device)


def rand(
    size: Sequence[int], generator: torch.Generator, device: torch.device | str,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Uniform [0, 1) draws of shape ``size`` on ``device`` (float32 unless ``dtype`` says)."""
    return _draw(lambda _, n, g: torch.rand(n, generator=g, device=g.device, dtype=dtype), size, generator,
                 device)


def randn(size: Sequence[int], generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    """Standard normal float32 draws of shape ``size`` on ``device``."""
    return _draw(lambda _, n, g: torch.randn(n, generator=g, device=g.device), size, generator, device)


def uniform(
    low: float, high: float, size: Sequence[int], generator: torch.Generator, device: torch.device | str,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Uniform [low, high) draws (like ``np.random.uniform``) on ``device``, float32 unless ``dtype``."""
    return rand(size, generator, device, dtype) * (high - low) + low


def normal(
    loc: float, scale: float, size: Sequence[int], generator: torch.Generator, device: torch.device | str
) -> torch.Tensor:
    """Normal N(loc, scale^2) float32 draws (like ``np.random.normal``) on ``device``."""
    return randn(size, generator, device) * scale + loc


def randint(
    low: int, high: int, size: Sequence[int], generator: torch.Generator, device: torch.device | str
) -> torch.Tensor:
    """Integers in [low, high) (like ``np.random.randint``), int64, on ``device``."""
    return _draw(lambda _, n, g: torch.randint(low, high, (n,), generator=g, device=g.device), size,
                 generator, device)


def poisson(rates: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Poisson draws with the given (non-negative) float rates, on the rates' device."""
    flat = rates.to(generator.device).reshape(-1)
    return _draw(lambda start, n, g: torch.poisson(flat[start:start + n], generator=g), rates.shape,
                 generator, rates.device)
