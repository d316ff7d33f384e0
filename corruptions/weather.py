"""Weather corruptions: snow, frost, fog and spatter, batched in torch.

Formulas follow hendrycks/robustness (``make_cifar_c.py`` for the CIFAR table, ``imagenet_c``
for the ImageNet one). Brightness, also a weather corruption, lives with the colour kernels.
"""

from __future__ import annotations

import torch

from ._cv_ports import water_mask
from ._filters import gaussian, line_blur
from ._frost_textures import FROST_FILES, frost_bank
from ._registry import normal, rand, randint, register, uniform
from ._zoom import clipped_zoom

# --------------------------------------------------------------------------- snow

_SNOW_LAYER_EPS = 1e-4  # grey levels; far above float32 round-off at 255, far below a level


@register(
    "snow", family="weather", benchmark=True,
    cifar=[(0.1, 0.2, 1.0, 0.6, 8, 3.0, 0.95), (0.1, 0.2, 1.0, 0.5, 10, 4.0, 0.9),
           (0.15, 0.3, 1.75, 0.55, 10, 4.0, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6.0, 0.85),
           (0.3, 0.3, 1.25, 0.65, 14, 12.0, 0.8)],
    imagenet=[(0.1, 0.3, 3.0, 0.5, 10, 4.0, 0.8), (0.2, 0.3, 2.0, 0.5, 12, 4.0, 0.7),
              (0.55, 0.3, 4.0, 0.9, 12, 8.0, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8.0, 0.65),
              (0.55, 0.3, 2.5, 0.85, 12, 12.0, 0.55)],
    integer_params=(4,),
)
def snow_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """Snow flakes streaked by motion blur, over an image brightened towards white.

    (loc, scale, zoom, threshold, motion radius, motion sigma, blend). A Gaussian layer per
    image is zoomed (clipped_zoom), thresholded, cast to 8 bits (truncating, as the PIL image
    of the reference), motion-blurred along U(-135, -45) degrees, truncated to 8 bits again (as
    ImageMagick's 8-bit result; imagecorruptions rounds instead) and added twice (also rotated
    by 180 degrees). The original used ImageMagick's motion blur, which cannot be matched bit
    for bit; like imagecorruptions we use its line kernel (``_filters.line_blur``), same width,
    Gaussian weights and offsets.
    """
    loc, scale = params[:2]
    n, _, h, w = x.shape
    noise = normal(loc, scale, (n, 1, h, w), generator, x.device)
    angle = uniform(-135.0, -45.0, (n,), generator, x.device, torch.float64)
    return _snow_apply(x, params, noise, angle)


def _snow_apply(x: torch.Tensor, params: tuple, noise: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """snow for given draws: the Gaussian layer (n, 1, H, W) and the streak angles (n,)."""
    _, _, zoom, threshold, radius, sigma, blend = params
    layer = clipped_zoom(noise, float(zoom))
    layer = layer.masked_fill(layer < threshold, 0.0)
    layer = torch.floor(layer.clamp(0, 1) * 255) / 255
    layer = line_blur(layer, int(radius), float(sigma), angle)
    # The reference reads the blurred layer back from ImageMagick as 8 bits, truncated: rounding
    # here would add a grey level to 2-29% of the layer's pixels. The epsilon keeps float32
    # round-off (k - 1e-5 for an exact k) from costing one; with it, 99.9% of the pixels match
    # ImageMagick 6.9.
    layer = torch.floor(layer * 255 + _SNOW_LAYER_EPS) / 255
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]) * 1.5 + 0.5
    x = blend * x + (1 - blend) * torch.maximum(x, gray)
    return x + layer + layer.flip(-2, -1)


# --------------------------------------------------------------------------- frost


def _frost_draws(n: int, h: int, w: int, sizes: torch.Tensor, generator, device, idx=None):
    """Per image: texture index randint(5) (unless ``idx`` is given), then the crop corner
    randint(0, th - h), randint(0, tw - w) inside that texture."""
    if idx is None:
        idx = randint(0, len(FROST_FILES), (n,), generator, "cpu")
    idx = idx.cpu()
    u = rand((n, 2), generator, "cpu", torch.float64)
    span = (sizes[idx] - torch.tensor([h, w])).clamp(min=1)
    start = torch.minimum(torch.floor(u * span).long(), span - 1)
    return idx.to(device), start[:, 0].to(device), start[:, 1].to(device)


def _frost_apply(x, params, idx, top, left) -> torch.Tensor:
    """c0 * x + c1 * frost crop, on the 0..1 scale, for given texture indices and crop corners."""
    c0, c1, scale = params
    n, _, h, w = x.shape
    bank, _ = frost_bank(float(scale), h, w, str(x.device))
    rows = top[:, None] + torch.arange(h, device=x.device)[None, :]  # (n, h)
    cols = left[:, None] + torch.arange(w, device=x.device)[None, :]  # (n, w)
    crop = bank[idx[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (n, h, w, 3)
    return c0 * x + c1 * crop.permute(0, 3, 1, 2).to(x.dtype) / 255


@register(
    "frost", family="weather", benchmark=True,
    cifar=[(1.0, 0.2, 0.2), (1.0, 0.3, 0.2), (0.9, 0.4, 0.2), (0.85, 0.4, 0.2), (0.75, 0.45, 0.2)],
    imagenet=[(1.0, 0.4, 1.0), (0.8, 0.6, 1.0), (0.7, 0.7, 1.0), (0.65, 0.7, 1.0), (0.6, 0.75, 1.0)],
)
def frost_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """Blend with a random crop of one of the frost textures frost1..frost5.

    (image weight, frost weight, texture scale): the texture (read from the installed
    imagecorruptions package) is resized by ``scale`` like cv2.resize's default bilinear
    (0.2 in the CIFAR script, 1 for ImageNet), then a random crop of the image size is taken.
    """
    n, _, h, w = x.shape
    _, sizes = frost_bank(float(params[2]), h, w, str(x.device))
    idx, top, left = _frost_draws(n, h, w, sizes, generator, x.device)
    return _frost_apply(x, params, idx, top, left)


# --------------------------------------------------------------------------- fog


def _plasma_draw_count(mapsize: int) -> int:
    count, k = 0, 1
    while k <= mapsize // 2:
        count += 3 * k * k
        k *= 2
    return count


def _plasma_fractal(uniforms: torch.Tensor, mapsize: int, decay: float) -> torch.Tensor:
    """The reference's diamond-square plasma fractal for n maps at once, normalised to [0, 1].

    ``uniforms`` (n, _plasma_draw_count(mapsize)) holds U[0, 1) draws, consumed per level in the
    reference's order: squares, then the two diamond sets, each in row-major order.
    """
    n = uniforms.shape[0]
    maps = torch.zeros(n, mapsize, mapsize, dtype=uniforms.dtype, device=uniforms.device)
    step, wibble, used = mapsize, 100.0, 0

    def wibbled(total: torch.Tensor) -> torch.Tensor:
        nonlocal used
        k = total.shape[1] * total.shape[2]
        u = uniforms[:, used:used + k].reshape(total.shape)
        used += k
        return total / 4 + wibble * (wibble * (2 * u - 1))

    while step >= 2:
        half = step // 2
        corner = maps[:, 0::step, 0::step]
        total = corner + corner.roll(-1, 1)
        total = total + total.roll(-1, 2)
        maps[:, half::step, half::step] = wibbled(total)
        dr = maps[:, half::step, half::step]
        ul = maps[:, 0::step, 0::step]
        maps[:, 0::step, half::step] = wibbled(dr + dr.roll(1, 1) + ul + ul.roll(-1, 2))
        maps[:, half::step, 0::step] = wibbled(dr + dr.roll(1, 2) + ul + ul.roll(-1, 1))
        step //= 2
        wibble /= decay
    lo = maps.amin(dim=(1, 2), keepdim=True)
    maps = maps - lo
    return maps / maps.amax(dim=(1, 2), keepdim=True)


def _fog_apply(x: torch.Tensor, params: tuple, uniforms: torch.Tensor) -> torch.Tensor:
    strength, decay = params
    n, _, h, w = x.shape
    mapsize = 1 << (max(h, w) - 1).bit_length()
    plasma = _plasma_fractal(uniforms, mapsize, float(decay))[:, None, :h, :w].to(x.dtype)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * plasma) * peak / (peak + strength)


@register(
    "fog", family="weather", benchmark=True,
    cifar=[(0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75)],
    imagenet=[(1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)],
)
def fog_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """Add a plasma fractal (diamond-square, map side the next power of two >= the image side,
    32 at CIFAR) weighted by c0, then rescale by max / (max + c0), max being the image's peak."""
    n, _, h, w = x.shape
    mapsize = 1 << (max(h, w) - 1).bit_length()
    uniforms = rand((n, _plasma_draw_count(mapsize)), generator, x.device)
    return _fog_apply(x, params, uniforms)


# --------------------------------------------------------------------------- spatter


@register(
    "spatter", family="weather", benchmark=False, integer_params=(5,),
    cifar=[(0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1.0, 0.69, 0.5, 0),
           (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1)],
    imagenet=[(0.65, 0.3, 4.0, 0.69, 0.6, 0), (0.65, 0.3, 3.0, 0.68, 0.6, 0), (0.65, 0.3, 2.0, 0.68, 0.5, 0),
              (0.65, 0.3, 1.0, 0.65, 1.5, 1), (0.67, 0.4, 1.0, 0.65, 1.5, 1)],
)
def spatter_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """Water drops (mode 0) or mud splashes (mode 1) from a thresholded, smoothed noise layer.

    (loc, scale, sigma, threshold, intensity, mode). Water: the reference's OpenCV chain (Canny
    edges, distance to the edges truncated at 20, box blur, histogram equalisation, an
    emboss-like 3x3 filter, box blur), reproduced with torch ops in ``corruptions._cv_ports``,
    gives a mask of drops that add pale turquoise (175, 238, 238). Mud: the mask is blurred with
    sigma = intensity, values below 0.8 dropped, and the image is replaced by mud brown
    (63, 42, 20) where the mask is set.
    """
    loc, scale, sigma, _, _, _ = params
    n, _, h, w = x.shape
    liquid = gaussian(normal(loc, scale, (n, 1, h, w), generator, x.device), float(sigma))
    return _spatter_apply(x, params, liquid)


def _spatter_apply(x: torch.Tensor, params: tuple, liquid: torch.Tensor) -> torch.Tensor:
    """spatter for a given smoothed liquid layer (n, 1, H, W), before thresholding."""
    _, _, _, threshold, intensity, mode = params
    liquid = liquid.masked_fill(liquid < threshold, 0.0)
    if int(mode) == 0:
        m = water_mask(liquid)
        peak = m.amax(dim=(1, 2, 3), keepdim=True)
        m = torch.where(peak > 0, m / peak.clamp(min=1e-12), torch.zeros_like(m)) * intensity
        color = torch.tensor([175.0, 238.0, 238.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255
        return x + m * color
    m = gaussian((liquid > threshold).to(x.dtype), float(intensity))
    m = torch.where(m < 0.8, torch.zeros_like(m), m)
    color = torch.tensor([63.0, 42.0, 20.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255
    return x * (1 - m) + color * m
