"""Weather corruptions: snow, frost, fog and spatter, batched in torch.

Formulas follow hendrycks/robustness (``make_cifar_c.py`` for the CIFAR table, ``imagenet_c``
for the ImageNet one). Brightness, also a weather corruption, lives with the colour kernels.
"""

from __future__ import annotations

import importlib.util
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ._filters import gaussian, line_blur
from ._registry import normal, rand, randint, register, uniform
from ._zoom import clipped_zoom

# --------------------------------------------------------------------------- snow


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
    of the reference), motion-blurred along U(-135, -45) degrees, rounded to 8 bits and added
    twice (also rotated by 180 degrees). The original used ImageMagick's motion blur, which
    cannot be matched bit for bit; like imagecorruptions we use its line kernel
    (``_filters.line_blur``), same width, Gaussian weights and offsets.
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
    layer = torch.round(layer * 255) / 255
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]) * 1.5 + 0.5
    x = blend * x + (1 - blend) * torch.maximum(x, gray)
    return x + layer + layer.flip(-2, -1)


# --------------------------------------------------------------------------- frost

_FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")


def _frost_dir() -> Path:
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

    folder = _frost_dir()
    textures = []
    for f in _FROST_FILES:
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
def _frost_bank(scale: float, min_h: int, min_w: int, device: str):
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


def _frost_draws(n: int, h: int, w: int, sizes: torch.Tensor, generator, device, idx=None):
    """Per image: texture index randint(5) (unless ``idx`` is given), then the crop corner
    randint(0, th - h), randint(0, tw - w) inside that texture."""
    if idx is None:
        idx = randint(0, len(_FROST_FILES), (n,), generator, "cpu")
    idx = idx.cpu()
    u = rand((n, 2), generator, "cpu", torch.float64)
    span = (sizes[idx] - torch.tensor([h, w])).clamp(min=1)
    start = torch.minimum(torch.floor(u * span).long(), span - 1)
    return idx.to(device), start[:, 0].to(device), start[:, 1].to(device)


def _frost_apply(x, params, idx, top, left) -> torch.Tensor:
    """c0 * x + c1 * frost crop, on the 0..1 scale, for given texture indices and crop corners."""
    c0, c1, scale = params
    n, _, h, w = x.shape
    bank, _ = _frost_bank(float(scale), h, w, str(x.device))
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
    _, sizes = _frost_bank(float(params[2]), h, w, str(x.device))
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
# The water mode of the reference runs OpenCV's Canny, distanceTransform, equalizeHist, blur and
# filter2D on 8-bit images; below are batched torch equivalents of each, following OpenCV's
# documented algorithms (see the docstrings for where they can differ).


def _box3(x: torch.Tensor) -> torch.Tensor:
    """cv2.blur(x, (3, 3)): 3x3 mean, border REFLECT_101 (float result), as shifted sums."""
    h, w = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1), mode="reflect")
    rows = p[..., 0:h, :] + p[..., 1:h + 1, :] + p[..., 2:h + 2, :]
    return (rows[..., 0:w] + rows[..., 1:w + 1] + rows[..., 2:w + 2]) * (1 / 9)


def _emboss(x: torch.Tensor) -> torch.Tensor:
    """cv2.filter2D(x, CV_8U, [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]) before saturation
    (border REFLECT_101), as shifted sums."""
    h, w = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1), mode="reflect")

    def at(dy: int, dx: int) -> torch.Tensor:
        return p[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    return (2 * (at(1, 1) - at(-1, -1)) + (at(1, 0) - at(-1, 0)) + (at(0, 1) - at(0, -1))) + at(0, 0)


def _canny(img: torch.Tensor, low: float = 50, high: float = 150) -> torch.Tensor:
    """cv2.Canny(img, low, high) (aperture 3, L1 gradient) on a batch (n, 1, H, W) of 0..255
    integer-valued floats; returns a bool edge map.

    Sobel with replicated borders, |gx| + |gy|, OpenCV's non-maximum suppression (sectors split
    at tan 22.5 degrees in its fixed point, ties broken as it does: '>' on one side, '>=' on the
    other), then hysteresis: candidates above ``low`` joined 8-connectedly to pixels above
    ``high``, resolved by repeated 3x3 dilation until nothing changes.
    """
    h, w = img.shape[-2:]
    p = F.pad(img, (1, 1, 1, 1), mode="replicate")
    dxr = p[..., :, 2:] - p[..., :, :-2]  # (.., H + 2, W)
    gx = dxr[..., 0:h, :] + 2 * dxr[..., 1:h + 1, :] + dxr[..., 2:h + 2, :]
    dyc = p[..., 2:, :] - p[..., :-2, :]  # (.., H, W + 2)
    gy = dyc[..., 0:w] + 2 * dyc[..., 1:w + 1] + dyc[..., 2:w + 2]
    mag = gx.abs() + gy.abs()
    m = F.pad(mag, (1, 1, 1, 1))  # OpenCV's magnitude buffer is zero outside the image
    h, w = img.shape[-2:]

    def at(dy: int, dx: int) -> torch.Tensor:
        return m[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    ax, ay = gx.abs().int(), gy.abs().int()  # |g| <= 1020: int32 products stay exact
    tg22x = ax * 13573  # round(tan(22.5 deg) * 2**15)
    ys = ay << 15
    horizontal = ys < tg22x
    vertical = ys > tg22x + (ax << 16)
    s_pos = (gx >= 0) == (gy >= 0)  # (xs ^ ys) >= 0 in OpenCV: same sign bits
    nms_h = (mag > at(0, -1)) & (mag >= at(0, 1))
    nms_v = (mag > at(-1, 0)) & (mag >= at(1, 0))
    nms_dp = (mag > at(-1, -1)) & (mag > at(1, 1))
    nms_dn = (mag > at(-1, 1)) & (mag > at(1, -1))
    nms_d = torch.where(s_pos, nms_dp, nms_dn)
    local_max = torch.where(horizontal, nms_h, torch.where(vertical, nms_v, nms_d))
    cand = (mag > int(low)) & local_max
    edges = cand & (mag > int(high))
    while True:
        grown = cand & _dilate3(edges)
        if torch.equal(grown, edges):
            return edges
        edges = grown


def _dilate3(mask: torch.Tensor) -> torch.Tensor:
    """3x3 binary dilation of a (..., H, W) bool mask (8-connected neighbourhood)."""
    p = F.pad(mask, (1, 1, 1, 1))
    h, w = mask.shape[-2:]
    rows = p[..., :, 0:w] | p[..., :, 1:w + 1] | p[..., :, 2:w + 2]
    return rows[..., 0:h, :] | rows[..., 1:h + 1, :] | rows[..., 2:h + 2, :]


# cv2.distanceTransform(DIST_L2, 5) is a 5x5 chamfer distance with these move costs.
_A, _B, _C = 1.0, 1.4, 2.1969


def _distance_to_edges(edges: torch.Tensor, cap: float) -> torch.Tensor:
    """min(cap, cv2.distanceTransform(255 - edges, DIST_L2, 5)) for a (n, 1, H, W) bool batch.

    OpenCV's two raster passes over the 5x5 chamfer mask, run row by row for all images at
    once: each row first takes the moves from the two rows above (below, on the way back),
    then the moves along the row, a running minimum (x + cummin(d - x)) instead of a scan.
    Starting from ``cap`` instead of infinity gives exactly min(cap, distance).
    """
    n, _, h, w = edges.shape
    big = torch.full((n, 2), cap, device=edges.device)
    d = torch.where(edges[:, 0], 0.0, cap).to(torch.float32)  # (n, H, W)
    d = torch.cat([big[:, None].expand(n, h, 2), d, big[:, None].expand(n, h, 2)], 2)  # pad x by 2
    xs = torch.arange(w + 4, dtype=torch.float32, device=edges.device)
    rows = list(d.unbind(1))
    for order, sign in ((range(h), 1), (range(h - 1, -1, -1), -1)):
        for y in order:
            t = rows[y]
            p1 = y - sign
            if 0 <= p1 < h:
                r = rows[p1]
                t = torch.minimum(t, r + _A)
                t[:, 1:-1] = torch.minimum(t[:, 1:-1], torch.minimum(r[:, :-2], r[:, 2:]) + _B)
                t[:, 2:-2] = torch.minimum(t[:, 2:-2], torch.minimum(r[:, :-4], r[:, 4:]) + _C)
            p2 = y - 2 * sign
            if 0 <= p2 < h:
                r = rows[p2]
                t[:, 1:-1] = torch.minimum(t[:, 1:-1], torch.minimum(r[:, :-2], r[:, 2:]) + _C)
            if sign > 0:  # forward pass: moves from the left
                t = torch.cummin(t - xs, 1).values + xs
            else:  # backward pass: moves from the right
                t = torch.cummin((t + xs).flip(1), 1).values.flip(1) - xs
            rows[y] = t.clamp(max=cap)
    return torch.stack(rows, 1)[:, None, :, 2:-2]


def _equalize_hist(img: torch.Tensor) -> torch.Tensor:
    """cv2.equalizeHist per image of a (n, 1, H, W) batch of integer values 0..255."""
    n = img.shape[0]
    flat = img.reshape(n, -1).long()
    total = flat.shape[1]
    hist = torch.zeros(n, 256, dtype=torch.long, device=img.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    first = (hist > 0).long().argmax(dim=1, keepdim=True)  # lowest grey level present
    count_first = hist.gather(1, first)
    cum = hist.cumsum(1) - hist.cumsum(1).gather(1, first)
    scale = 255.0 / (total - count_first).clamp(min=1).float()
    lut = torch.round(cum.float() * scale).clamp(0, 255)
    lut = torch.where(torch.arange(256, device=img.device)[None] <= first, 0.0, lut)
    constant = count_first == total
    lut = torch.where(constant, first.float().expand(n, 256), lut)
    return lut.gather(1, flat).reshape(img.shape).to(img.dtype)


def _water_mask(liquid: torch.Tensor) -> torch.Tensor:
    """The reference's water-drop mask m (before /max * intensity) from the liquid layer."""
    # (liquid * 255).astype(np.uint8): values above 255 wrap around (mod 256) in the reference,
    # which leaves a dark hole in the brightest drops; kept, since CIFAR-C was made that way.
    layer = torch.remainder(torch.floor(liquid * 255), 256)
    edges = _canny(layer)
    dist = _distance_to_edges(edges, 20.0)  # distanceTransform then THRESH_TRUNC at 20
    dist = torch.floor(_box3(dist))  # cv2.blur(float) then astype(uint8)
    dist = _equalize_hist(dist)
    dist = _emboss(dist).clamp(0, 255)  # filter2D to CV_8U saturates
    dist = torch.round(_box3(dist))  # cv2.blur on uint8 rounds
    return layer * dist


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
    emboss-like 3x3 filter, box blur) is reproduced with torch ops (see ``_canny``,
    ``_distance_to_edges``, ``_equalize_hist``); the drops add pale turquoise (175, 238, 238).
    Mud: the mask is blurred with sigma = intensity, values below 0.8 dropped, and the image
    is replaced by mud brown (63, 42, 20) where the mask is set.
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
        m = _water_mask(liquid)
        peak = m.amax(dim=(1, 2, 3), keepdim=True)
        m = torch.where(peak > 0, m / peak.clamp(min=1e-12), torch.zeros_like(m)) * intensity
        color = torch.tensor([175.0, 238.0, 238.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255
        return x + m * color
    m = gaussian((liquid > threshold).to(x.dtype), float(intensity))
    m = torch.where(m < 0.8, torch.zeros_like(m), m)
    color = torch.tensor([63.0, 42.0, 20.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255
    return x * (1 - m) + color * m
