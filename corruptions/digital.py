"""Digital corruptions computed on 8-bit pixels: jpeg_compression and pixelate.

Both references work on PIL uint8 images, so both are 8-bit kernels (``register(uint8=True)``):
they get and return uint8 batches, and float input is rounded to 8 bits first.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch

from ._pil_resize import pil_pixelate
from ._registry import map_on_threads, register

# --------------------------------------------------------------------------------------------
# jpeg_compression


# Images per worker below which one thread codes the whole batch (thread hand-off costs more).
_JPEG_IMAGES_PER_THREAD = 16


def _jpeg_round_trip_torchvision(images: torch.Tensor, quality: int) -> torch.Tensor:
    """libjpeg round trip of a uint8 batch; chunks run on torch.get_num_threads() threads.

    libjpeg codes one image on one core and torchvision's codecs release the GIL, so a batch
    is split into equal chunks coded in parallel (identical bytes: each image is coded alone).
    """
    from torchvision.io import decode_jpeg, encode_jpeg

    def code(chunk: torch.Tensor) -> list[torch.Tensor]:
        return decode_jpeg(encode_jpeg(list(chunk), quality=quality))

    workers = min(torch.get_num_threads(), len(images) // _JPEG_IMAGES_PER_THREAD)
    # Warning filters are process-wide, so this one (set here, not in the workers) covers them.
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image codecs in favour of another package; they still work.
        warnings.simplefilter("ignore", DeprecationWarning)
        parts = map_on_threads(code, torch.tensor_split(images, max(workers, 1)), workers)
        return torch.stack([image for part in parts for image in part])


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
    uint8=True,
)
def jpeg_compression_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """Encode as JPEG at quality c and decode (libjpeg via torchvision.io, 4:2:0 chroma, like PIL).

    Always runs on the CPU codec, so CPU and CUDA batches give identical bytes; PIL is the
    fallback when torchvision was built without its image codecs.
    """
    (quality,) = params
    images = x.cpu()
    try:
        decoded = _jpeg_round_trip_torchvision(images, int(quality))
    except (RuntimeError, ImportError, AttributeError):  # pragma: no cover - codec-less torchvision
        decoded = _jpeg_round_trip_pil(images, int(quality))
    return decoded.to(x.device)


# --------------------------------------------------------------------------------------------
# pixelate

# Image area from which CPU batches are pixelated by PIL itself (each image merged from its
# planes into one RGB image, so no layout change of the batch), on torch.get_num_threads()
# threads (PIL releases the GIL while resizing): the bit-exact port below is 2x faster than PIL
# at 64 px but slower from about 128 px (one thread: 5,300 vs 6,600 img/s at 128 px, 1,300-3,300
# vs 2,800-3,800 at 224 px). The bytes are the same (tested). GPUs always take the port.
_PIXELATE_PIL_AREA = 128 * 128


def _pixelate_pil(x: torch.Tensor, small_h: int, small_w: int, nearest: bool) -> torch.Tensor:
    """PIL's BOX downscale and BOX / NEAREST upscale of each image of a uint8 (N, 3, H, W) CPU batch."""
    from PIL import Image

    height, width = x.shape[-2:]
    upscale = Image.NEAREST if nearest else Image.BOX
    images = x.contiguous().numpy()
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    written = out.numpy()

    def resize(indices: np.ndarray) -> None:
        for i in indices:
            image = Image.merge("RGB", [Image.fromarray(plane) for plane in images[i]])
            image = image.resize((small_w, small_h), Image.BOX).resize((width, height), upscale)
            for c, band in enumerate(image.split()):
                written[i, c] = np.asarray(band)

    workers = max(1, min(torch.get_num_threads(), len(images)))
    map_on_threads(resize, np.array_split(np.arange(len(images)), workers), workers)
    return out


@register(
    "pixelate",
    # (scale factor, upscaling filter: 0 = PIL BOX as make_cifar_c.py, 1 = PIL NEAREST as ImageNet-C)
    cifar=((0.95, 0), (0.9, 0), (0.85, 0), (0.75, 0), (0.65, 0)),
    imagenet=((0.6, 1), (0.5, 1), (0.4, 1), (0.3, 1), (0.25, 1)),
    interpolation=("auto", "nearest"),
    deterministic=True,
    uint8=True,
)
def pixelate_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """Box-downscale by c (to int(W c) x int(H c)), then upscale back to H x W, as PIL does.

    Upscaling with PIL's BOX filter (CIFAR-C) is nearest neighbour; ImageNet-C's NEAREST picks the
    same pixels except at a few exact ties, which the second parameter reproduces.
    """
    c, nearest = params
    height, width = x.shape[-2:]
    small_h, small_w = max(int(height * c), 1), max(int(width * c), 1)
    if x.device.type == "cpu" and height * width >= _PIXELATE_PIL_AREA:
        return _pixelate_pil(x, small_h, small_w, bool(nearest))
    return pil_pixelate(x, small_h, small_w, bool(nearest))
