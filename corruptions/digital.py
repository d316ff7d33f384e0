"""Digital corruptions computed on 8-bit pixels: jpeg_compression and pixelate.

Both references work on PIL uint8 images, so these kernels first round the batch to 8 bits.
"""

from __future__ import annotations

import io
import warnings
from functools import lru_cache

import numpy as np
import torch

from ._registry import register


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.mul(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)


# --------------------------------------------------------------------------------------------
# jpeg_compression


def _jpeg_round_trip_torchvision(images: torch.Tensor, quality: int) -> torch.Tensor:
    from torchvision.io import decode_jpeg, encode_jpeg

    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image codecs in favour of another package; they still work.
        warnings.simplefilter("ignore", DeprecationWarning)
        encoded = encode_jpeg(list(images), quality=quality)
        return torch.stack(decode_jpeg(encoded))


def _jpeg_round_trip_pil(images: torch.Tensor, quality: int) -> torch.Tensor:
    from PIL import Image

    out = []
    for image in images.permute(0, 2, 3, 1).numpy():
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality)
        buffer.seek(0)
        out.append(np.asarray(Image.open(buffer).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


@register(
    "jpeg_compression",
    cifar=(80, 65, 58, 50, 40),
    imagenet=(25, 18, 15, 10, 7),
    integer_params=(0,),
    deterministic=True,
)
def jpeg_compression_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """Encode as JPEG at quality c and decode (libjpeg via torchvision.io, 4:2:0 chroma, like PIL).

    Always runs on the CPU codec, so CPU and CUDA batches give identical bytes; PIL is the
    fallback when torchvision was built without its image codecs.
    """
    (quality,) = params
    images = _to_uint8(x).cpu()
    try:
        decoded = _jpeg_round_trip_torchvision(images, int(quality))
    except (RuntimeError, ImportError, AttributeError):  # pragma: no cover - codec-less torchvision
        decoded = _jpeg_round_trip_pil(images, int(quality))
    return decoded.to(x.device, torch.float32).div_(255.0)


# --------------------------------------------------------------------------------------------
# pixelate


@lru_cache(maxsize=64)
def _pil_box_weights(in_size: int, out_size: int) -> torch.Tensor:
    """(out_size, in_size) resampling matrix of PIL's ``Image.BOX`` filter along one axis.

    PIL samples the box at input pixel centres (weights 0 or 1, normalised), so downscaling
    averages the input pixels whose centre falls in the output pixel's box and upscaling picks
    input pixel floor((i + 0.5) * in / out), i.e. nearest neighbour.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    weights = np.zeros((out_size, in_size))
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        pos = (np.arange(lo, hi) - center + 0.5) / filterscale
        w = ((pos > -0.5) & (pos <= 0.5)).astype(np.float64)
        weights[i, lo:hi] = w / w.sum()
    return torch.from_numpy(weights).to(torch.float32)


def _pil_box_resize(u: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """PIL ``resize((width, height), Image.BOX)`` of 0..255 values: horizontal pass, round, vertical, round.

    PIL rounds each pass to uint8 (half up); the weights here are 1/k, so float32 arithmetic
    reproduces its fixed-point results.
    """
    wh = _pil_box_weights(u.shape[-1], width).to(u.device)
    wv = _pil_box_weights(u.shape[-2], height).to(u.device)
    if wh.shape[0] != wh.shape[1] or not torch.equal(wh, torch.eye(wh.shape[0], device=u.device)):
        u = torch.matmul(u, wh.T).add_(0.5).floor_()
    if wv.shape[0] != wv.shape[1] or not torch.equal(wv, torch.eye(wv.shape[0], device=u.device)):
        u = torch.matmul(wv, u).add_(0.5).floor_()
    return u


def _upscale_indices(in_size: int, out_size: int, incremental: bool) -> torch.Tensor:
    """Source index of each output pixel when PIL upscales ``in_size`` -> ``out_size``.

    ``Image.BOX`` computes floor((i + 0.5) * in / out) in double precision; ``Image.NEAREST``
    reaches the same positions by adding in / out step by step (an affine transform), whose
    round-off sends a few exact ties (e.g. 28 -> 70 px) to the other side.
    """
    scale = in_size / out_size
    i = np.arange(out_size)
    if incremental:
        steps = np.full(out_size, scale)
        steps[0] = scale * 0.5
        index = np.floor(np.cumsum(steps)).astype(np.int64)  # sequential float64 sums, like PIL
    else:
        index = np.floor((i + 0.5) * scale).astype(np.int64)
    return torch.from_numpy(np.clip(index, 0, in_size - 1))


def _upscale(u: torch.Tensor, height: int, width: int, incremental: bool) -> torch.Tensor:
    rows = _upscale_indices(u.shape[-2], height, incremental).to(u.device)
    cols = _upscale_indices(u.shape[-1], width, incremental).to(u.device)
    return u.index_select(-2, rows).index_select(-1, cols)


@register(
    "pixelate",
    # (scale factor, upscaling filter: 0 = PIL BOX as make_cifar_c.py, 1 = PIL NEAREST as ImageNet-C)
    cifar=((0.95, 0), (0.9, 0), (0.85, 0), (0.75, 0), (0.65, 0)),
    imagenet=((0.6, 1), (0.5, 1), (0.4, 1), (0.3, 1), (0.25, 1)),
    interpolation=("auto", "nearest"),
    deterministic=True,
)
def pixelate_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """Box-downscale by c (to int(W c) x int(H c)), then upscale back to H x W, as PIL does.

    Upscaling with PIL's BOX filter (CIFAR-C) is nearest neighbour; ImageNet-C's NEAREST picks the
    same pixels except at a few exact ties, which the second parameter reproduces.
    """
    c, nearest = params
    height, width = x.shape[-2:]
    small_h, small_w = max(int(height * c), 1), max(int(width * c), 1)
    u = _to_uint8(x).to(torch.float32)
    small = _pil_box_resize(u, small_h, small_w)
    return _upscale(small, height, width, incremental=bool(nearest)).div_(255.0)
