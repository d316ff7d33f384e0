"""``corrupt``: one public entry that dispatches every input type to the batched kernels.

``corrupt`` dispatches on the input type (torchvision v2 style): each supported type has one
registered image kernel, and everything funnels into the batched tensor path, so a numpy image
and the same image as a tensor give identical results for the same seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from numbers import Integral
from typing import Any

import numpy as np
import torch

# Importing the kernel modules runs their ``register`` calls (all 19 corruptions).
from . import blur, color, digital, geometric, noise, weather  # noqa: F401
from ._params import check_profile, resolve_params
from ._registry import get_spec
from ._vocabulary import get_corruption_names as get_corruption_names

MIN_SIZE = 8  # smallest height / width accepted
# Added before truncating x * 255 to uint8, so float32 round-off (254.99998 for an exact 255)
# cannot cost a grey level. It is above float32 round-off at 255 (~5e-5) and far below what any
# corruption changes; exact results closer than that below an integer are rounded up.
_TRUNCATION_EPS = 1e-4


def corrupt(
    image: Any,
    corruption_name: str,
    severity: int | Sequence[int] | torch.Tensor = 1,
    *,
    generator: torch.Generator | np.random.Generator | None = None,
    profile: str = "auto",
) -> Any:
    """Corrupt ``image`` with ``corruption_name`` at ``severity``.

    Args:
        image: a numpy uint8 image (H, W, 3) or batch (N, H, W, 3); a torch tensor (N, 3, H, W)
            or (3, H, W), uint8 or float in [0, 1], on any device; or an RGB PIL image.
            H and W must be at least 8. The output has the input's type, shape, dtype and device.
        corruption_name: one of ``get_corruption_names("all")``.
        severity: 1..5, or for a batch one severity per image (length-N sequence or tensor).
        generator: a ``torch.Generator`` or ``numpy.random.Generator``; the same generator state
            gives bit-identical output. None draws a fresh random seed (the global RNG is never
            used). Draws are made on the generator's device, so a CPU generator gives the same
            output for CPU and CUDA data.
        profile: "auto" (CIFAR-C parameters at <= 32 px, ImageNet-C at >= 224 px, interpolated
            in between, see ``corruptions._params``), "cifar" or "imagenet".

    uint8 results are clipped to [0, 255] and truncated (like the reference's ``np.uint8``);
    float results are clipped to [0, 1].
    """
    spec = get_spec(corruption_name)
    check_profile(profile)
    return _get_image_kernel(image)(image, spec.name, severity, generator, profile)


# ---------------------------------------------------------------------------------------------
# Dispatch by input type


_IMAGE_KERNELS: dict[type, Callable[..., Any]] = {}


def _register_image_kernel(input_type: type) -> Callable:
    def decorate(fn: Callable) -> Callable:
        _IMAGE_KERNELS[input_type] = fn
        return fn

    return decorate


def _get_image_kernel(image: Any) -> Callable[..., Any]:
    for cls in type(image).__mro__:
        if cls in _IMAGE_KERNELS:
            return _IMAGE_KERNELS[cls]
    raise TypeError(
        f"image must be a numpy.ndarray (H, W, 3) uint8, a torch.Tensor (N, 3, H, W) uint8 or float "
        f"in [0, 1], or an RGB PIL.Image.Image; got {type(image).__module__}.{type(image).__name__}"
    )


def _torch_generator(generator: Any, device: torch.device) -> torch.Generator:
    if generator is None:
        fresh = torch.Generator(device=device)
        fresh.seed()  # nondeterministic seed; the global RNG stays untouched
        return fresh
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, np.random.Generator):
        # A deterministic torch seed from the numpy stream (advancing it, like any draw would).
        seed = int(generator.integers(0, 2**63 - 1, dtype=np.int64))
        derived = torch.Generator()
        derived.manual_seed(seed)
        return derived
    raise TypeError(
        f"generator must be a torch.Generator, a numpy.random.Generator or None, got "
        f"{type(generator).__name__}; e.g. generator=torch.Generator().manual_seed(0)"
    )


def _severities(severity: Any, batch_shape: tuple[int, ...]) -> int | torch.Tensor:
    """An int, or a 1-D CPU int64 tensor with one severity per image (flattened batch)."""
    if isinstance(severity, Integral) and not isinstance(severity, bool):
        values = int(severity)
        if not 1 <= values <= 5:
            raise ValueError(f"severity={severity} is outside 1..5; pass an integer from 1 to 5")
        return values
    if isinstance(severity, (torch.Tensor, np.ndarray, list, tuple)):
        sev = torch.as_tensor(np.asarray(severity) if isinstance(severity, (list, tuple)) else severity)
        if sev.dtype.is_floating_point or sev.dtype.is_complex or sev.dtype == torch.bool:
            raise TypeError(f"severity must hold integers 1..5, got dtype {sev.dtype}")
        sev = sev.detach().to("cpu", torch.int64)
        if sev.ndim == 0:
            return _severities(int(sev), batch_shape)
        n = int(np.prod(batch_shape)) if batch_shape else 1
        if tuple(sev.shape) != batch_shape and not (sev.ndim == 1 and sev.numel() == n):
            raise ValueError(
                f"severity has shape {tuple(sev.shape)} but the image batch has shape {batch_shape}; "
                "pass one severity per image, or a single int"
            )
        sev = sev.reshape(-1)
        if sev.numel() and not bool(((sev >= 1) & (sev <= 5)).all()):
            bad = sorted(set(sev[(sev < 1) | (sev > 5)].tolist()))
            raise ValueError(f"severity holds values {bad} outside 1..5; use integers from 1 to 5")
        values = torch.unique(sev)
        return int(values[0]) if values.numel() == 1 else sev
    raise TypeError(
        f"severity must be an int 1..5 or one int per image (sequence or tensor), "
        f"got {type(severity).__name__}"
    )


def _check_size(height: int, width: int) -> None:
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ValueError(
            f"image is {height}x{width} pixels; corruptions need at least {MIN_SIZE}x{MIN_SIZE} "
            "(resize it first)"
        )


@torch.no_grad()
def _corrupt_batch(
    batch: torch.Tensor, name: str, severity: int | torch.Tensor, generator: Any, profile: str
) -> torch.Tensor:
    """Core path: (n, 3, H, W) uint8 or float batch -> same dtype, clipped (and truncated)."""
    n, _, height, width = batch.shape
    if n == 0:
        return batch.clone()
    spec = get_spec(name)
    gen = _torch_generator(generator, batch.device)
    if spec.uint8:
        # 8-bit kernels (the reference works on PIL uint8 images): float input is rounded first.
        x = batch if batch.dtype == torch.uint8 else batch.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
        x = x.contiguous()
    else:
        # A private contiguous float32 copy: kernels may work on it in place.
        x = batch.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
        if batch.dtype == torch.uint8:
            x = x.div_(255.0)
    if isinstance(severity, int):
        out = spec.kernel(x, resolve_params(name, severity, height, width, profile), gen)
    else:
        out = torch.empty_like(x)
        for s in torch.unique(severity).tolist():  # ascending: a fixed draw order
            index = (severity == s).nonzero().squeeze(1).to(batch.device)
            params = resolve_params(name, int(s), height, width, profile)
            out[index] = spec.kernel(x[index], params, gen).to(out.dtype)
    if spec.uint8:
        return out if batch.dtype == torch.uint8 else out.to(batch.dtype).div_(255.0)
    # ``out`` is the kernel's fresh result (or the private copy), so in-place ops are safe.
    if batch.dtype == torch.uint8:
        return out.mul_(255.0).add_(_TRUNCATION_EPS).clamp_(0.0, 255.0).to(torch.uint8)
    return out.clamp_(0.0, 1.0).to(batch.dtype)


@_register_image_kernel(torch.Tensor)
def _corrupt_tensor(
    image: torch.Tensor, name: str, severity: Any, generator: Any, profile: str
) -> torch.Tensor:
    if image.dtype != torch.uint8 and not image.dtype.is_floating_point:
        raise TypeError(f"image tensor must be uint8 or float in [0, 1], got dtype {image.dtype}")
    if image.ndim < 3 or image.shape[-3] != 3:
        raise ValueError(
            f"image tensor must have shape (N, 3, H, W) or (3, H, W), got {tuple(image.shape)}; "
            "convert grey or RGBA images to RGB and put channels first"
        )
    height, width = image.shape[-2:]
    _check_size(height, width)
    if image.dtype.is_floating_point and image.numel():
        low, high = torch.aminmax(image.detach())
        if not (bool(low >= 0) and bool(high <= 1)):
            raise ValueError(
                f"float image values must lie in [0, 1], got min {float(low):.4g} max {float(high):.4g}; "
                "divide uint8 data by 255 (or pass the uint8 tensor)"
            )
    batch_shape = tuple(image.shape[:-3])
    sev = _severities(severity, batch_shape)
    out = _corrupt_batch(image.reshape(-1, 3, height, width), name, sev, generator, profile)
    return out.reshape(image.shape)


@_register_image_kernel(np.ndarray)
def _corrupt_numpy(image: np.ndarray, name: str, severity: Any, generator: Any, profile: str) -> np.ndarray:
    if image.dtype != np.uint8:
        raise TypeError(
            f"numpy image must be uint8 (H, W, 3), got dtype {image.dtype}; use image.astype(np.uint8)"
        )
    if image.ndim < 3 or image.shape[-1] != 3:
        raise ValueError(
            f"numpy image must have shape (H, W, 3) or (N, H, W, 3), got {image.shape}; "
            "convert grey or RGBA images to RGB (channels last)"
        )
    # torch.from_numpy shares memory; copy read-only arrays (np.asarray of a PIL image) first.
    array = np.ascontiguousarray(image) if image.flags.writeable else np.array(image)
    batch = torch.from_numpy(array).movedim(-1, -3)
    out = _corrupt_tensor(batch, name, severity, generator, profile)
    return out.movedim(-3, -1).contiguous().numpy()


def _register_pil() -> None:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with torchvision
        return

    @_register_image_kernel(Image.Image)
    def _corrupt_pil(
        image: Image.Image, name: str, severity: Any, generator: Any, profile: str
    ) -> Image.Image:
        if image.mode != "RGB":
            raise TypeError(f"PIL image must have mode 'RGB', got {image.mode!r}; use image.convert('RGB')")
        return Image.fromarray(_corrupt_numpy(np.asarray(image), name, severity, generator, profile))


_register_pil()
