"""The frost textures: located in the installed imagecorruptions package, decoded once, resized.

frost draws a random crop of one of frost1..frost5 (the CIFAR script's ``randint(5)``; frost6 is
never chosen). ``frost_bank`` returns the five textures resized like cv2.resize (bilinear) and
zero-padded into one uint8 tensor on the data's device, cached per scale, image size and device.
"""

from __future__ import annotations

import importlib.util
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")


def frost_dir() -> Path:
    """The ``frost/`` folder of the installed imagecorruptions package, found without importing
    it (its import needs pkg_resources)."""
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "frost needs the texture images shipped with the 'imagecorruptions' package; "
            "install it with `pip install imagecorruptions`"
        )
    for root in spec.submodule_search_locations:
        folder = Path(root) / "frost"
        if folder.is_dir():
            return folder
    raise RuntimeError("the installed imagecorruptions package has no frost/ folder; reinstall it")


@cache
def _frost_textures_cpu() -> tuple[torch.Tensor, ...]:
    """frost1..frost5 as uint8 RGB tensors (3, h, w), decoded once."""
    from PIL import Image

    folder = frost_dir()
    textures = []
    for f in FROST_FILES:
        with Image.open(folder / f) as im:
            textures.append(torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous())
    return tuple(textures)


def _resize_axis(size: int, out: int, inv_scale: float):
    """OpenCV INTER_LINEAR source taps for one axis: src = (dst + 0.5) / scale - 0.5, clamped."""
    coord = (np.arange(out, dtype=np.float64) + 0.5) / inv_scale - 0.5
    coord = np.maximum(coord, 0)
    i0 = np.minimum(np.floor(coord).astype(np.int64), size - 1)
    i1 = np.minimum(i0 + 1, size - 1)
    return i0, i1, coord - np.floor(coord)


def _resize_texture(tex: torch.Tensor, scale: float, min_h: int, min_w: int) -> torch.Tensor:
    """cv2.resize(tex, (0, 0), fx=scale, fy=scale) (bilinear, rounded to uint8); if the result
    cannot hold an (min_h, min_w) crop, upscale to fit x 1.1 (bicubic), as imagecorruptions does."""
    t = tex
    _, h, w = t.shape
    oh, ow = int(round(h * scale)), int(round(w * scale))
    if (oh, ow) != (h, w):
        for axis, size, out in ((1, h, oh), (2, w, ow)):
            i0, i1, wt = (torch.as_tensor(a) for a in _resize_axis(size, out, scale))
            shape = [1, 1, 1]
            shape[axis] = out
            a, b = t.index_select(axis, i0).float(), t.index_select(axis, i1).float()
            t = torch.lerp(a, b, wt.float().view(shape))
        t = torch.round(t)
    t = t.float()
    if t.shape[1] <= min_h or t.shape[2] <= min_w:
        factor = 1.1 * max(min_h / t.shape[1], min_w / t.shape[2], 1.0)
        size = (int(np.ceil(t.shape[1] * factor)), int(np.ceil(t.shape[2] * factor)))
        t = F.interpolate(t[None], size=size, mode="bicubic", align_corners=False)[0]
        t = torch.round(t.clamp(0, 255))
    return t


@lru_cache(maxsize=4)
def frost_bank(scale: float, min_h: int, min_w: int, device: str):
    """The 5 resized textures zero-padded into one (5, 3, Hm, Wm) uint8 tensor on
    ``device``, plus their (5, 2) sizes. Cached per scale, image size and device."""
    texs = [_resize_texture(t, scale, min_h, min_w) for t in _frost_textures_cpu()]
    hm = max(t.shape[1] for t in texs)
    wm = max(t.shape[2] for t in texs)
    bank = torch.zeros(len(texs), 3, hm, wm, dtype=torch.uint8)  # values are whole grey levels
    for k, t in enumerate(texs):
        bank[k, :, : t.shape[1], : t.shape[2]] = t
    sizes = torch.tensor([[t.shape[1], t.shape[2]] for t in texs])
    return bank.to(device), sizes
