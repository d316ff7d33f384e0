"""shapes: a CIFAR-like 10-class image set generated offline from a seed in about a second.

Each image is one geometric shape (random colour, position, size, rotation, shading) drawn
anti-aliased over a textured background (flat, gradient, stripes or smooth noise) plus a little
pixel noise. Small and thin shapes over striped or noisy backgrounds are what corruptions
(noise, blur, pixelation) destroy first, so a model trained on clean images loses accuracy under
corruption as on CIFAR. Sizes (radius 6-13 px at 32 px) and texture contrast were tuned so that
it is learnable quickly: a small 5-layer CNN reached 52% test accuracy after 300 steps of batch
128 (benchmarks/robustness/shapes_difficulty.py measures clean vs corrupted accuracy of a trained model).
Rendering is vectorised over images (torch, CPU); the only Python loops run over chunks of
images, the 10 classes and the 4 background types.

The train and test splits come from different random streams of the same seed, so they share
no images; the same (seed, split, size, image_size) always gives the same bytes.
"""

from __future__ import annotations

import contextlib
import math
import threading

import numpy as np
import torch
import torch.nn.functional as F

from ._base import ArrayDataset

SHAPES_CLASSES = (
    "circle", "square", "triangle", "star", "plus", "ring", "ellipse", "hexagon", "crescent", "semicircle",
)
# Channel statistics of the default train split (seed 0, 10,000 images), 0..1 scale. Fixed so that
# the normalisation of a model does not depend on the seed or size it was trained with.
SHAPES_MEAN = (0.4924, 0.4962, 0.4990)
SHAPES_STD = (0.2664, 0.2675, 0.2655)

_SPLIT_STREAM = {"train": 0, "test": 1}
_CHUNK = 1024  # images rendered at once (fixed: the pixel-noise draws depend on it)
_SUPERSAMPLE = 2  # shapes are rendered at 2x and averaged down: anti-aliased edges


def _stream_seed(seed: int, split: str) -> int:
    """Independent seed for (seed, split), so train and test never share a random stream."""
    return int(np.random.SeedSequence([int(seed), _SPLIT_STREAM[split], 0x5A4E]).generate_state(1)[0])


def _polygon(u: torch.Tensor, v: torch.Tensor, n: int, inner: float) -> torch.Tensor:
    """Inside test for a regular star polygon: n outer vertices at radius 1 (one on the +u axis),
    inner vertices at radius ``inner`` halfway between; ``inner = cos(pi / n)`` is the convex n-gon."""
    rho = torch.hypot(u, v)
    sector = 2 * math.pi / n
    phi = torch.remainder(torch.atan2(v, u), sector)
    phi = torch.minimum(phi, sector - phi)  # fold onto [0, pi / n] by symmetry
    px, py = rho * torch.cos(phi), rho * torch.sin(phi)
    bx, by = inner * math.cos(math.pi / n), inner * math.sin(math.pi / n)
    return (bx - 1) * py - by * (px - 1) >= 0  # on the origin's side of the edge (1,0)-(bx,by)


def _shape_mask(label: int, u: torch.Tensor, v: torch.Tensor, aspect: torch.Tensor) -> torch.Tensor:
    """Boolean mask of class ``label`` in shape coordinates (u, v), radius 1."""
    name = SHAPES_CLASSES[label]
    rho2 = u * u + v * v
    if name == "circle":
        return rho2 <= 0.85
    if name == "square":
        return _polygon(u, v, 4, math.cos(math.pi / 4))
    if name == "triangle":
        return _polygon(u / 1.1, v / 1.1, 3, math.cos(math.pi / 3))
    if name == "star":
        return _polygon(u / 1.1, v / 1.1, 5, 0.42)
    if name == "plus":
        return ((u.abs() <= 0.3) & (v.abs() <= 1)) | ((v.abs() <= 0.3) & (u.abs() <= 1))
    if name == "ring":
        return (rho2 <= 1.0) & (rho2 >= 0.55**2)
    if name == "ellipse":
        return u * u + (v / aspect) ** 2 <= 1.0
    if name == "hexagon":
        return _polygon(u, v, 6, math.cos(math.pi / 6))
    if name == "crescent":
        return (rho2 <= 1.0) & ((u - 0.45) ** 2 + v * v >= 0.8**2)
    if name == "semicircle":
        return (rho2 <= 1.0) & (u >= -0.1)
    raise AssertionError(name)


def _backgrounds(kind, c1, c2, angle, period, phase, grids, size):
    """(n, 3, size, size) float backgrounds: colour c1 blended toward c2 by a per-type pattern t."""
    n = kind.shape[0]
    ax = torch.arange(size, dtype=torch.float32) + 0.5
    y, x = ax.view(1, size, 1), ax.view(1, 1, size)
    cos_a, sin_a = torch.cos(angle).view(n, 1, 1), torch.sin(angle).view(n, 1, 1)
    proj = (x - size / 2) * cos_a + (y - size / 2) * sin_a  # (n, size, size)
    gradient = (proj / size + 0.5).clamp(0, 1)
    stripes = (torch.sin(2 * math.pi * proj / period.view(n, 1, 1) + phase.view(n, 1, 1)) * 3).clamp(-1, 1)
    stripes = stripes * 0.5 + 0.5
    smooth = F.interpolate(grids, size=(size, size), mode="bicubic", align_corners=False)[:, 0].clamp(0, 1)
    t = torch.zeros(n, size, size)
    for k, pattern in ((1, gradient), (2, stripes), (3, smooth)):
        sel = kind == k
        t[sel] = pattern[sel]
    return c1.view(n, 3, 1, 1) + (c2 - c1).view(n, 3, 1, 1) * t.unsqueeze(1)


_threads_lock = threading.Lock()
_threads_users = 0  # renderings inside _single_threaded
_threads_saved = 1  # the thread count to restore when the last one leaves


@contextlib.contextmanager
def _single_threaded():
    """Runs torch CPU ops on one thread, then restores the previous thread count.

    The rendering is a long series of small ops, too small for intra-op threads to pay for waking
    and joining them at every op. On a busy CPU each wake-up also waits for a free core (and with
    OpenMP's default active waiting the threads spin against the other load), which makes
    multi-threaded rendering several times slower, while on an idle machine a second thread saves
    only part of the time. The thread count is process-global: concurrent renderings share one
    save and restore (counted under a lock), but torch ops of other threads also run on one
    thread meanwhile. The rendered bytes do not depend on the thread count.
    """
    global _threads_users, _threads_saved
    with _threads_lock:
        if _threads_users == 0:
            _threads_saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_saved)


def generate_shapes(
    num_images: int, *, seed: int = 0, split: str = "train", image_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Renders ``num_images`` shapes images: ``(uint8 (N, 3, S, S) channel-first, int64 labels (N,))``.

    Classes are balanced exactly when ``num_images`` is a multiple of 10 (otherwise within one).
    """
    if split not in _SPLIT_STREAM:
        raise ValueError(f"split={split!r} is not valid; use 'train' or 'test'")
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images={num_images!r} must be a positive integer")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size={image_size!r} must be an integer >= 8")
    with _single_threaded():
        return _render(num_images, seed, split, image_size)


def _render(num_images: int, seed: int, split: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    n, s = num_images, image_size
    g = torch.Generator().manual_seed(_stream_seed(seed, split))

    def rand(*shape):
        return torch.rand(*shape, generator=g)

    # All per-image parameters up front, so the draws do not depend on the chunking below.
    labels = (torch.arange(n) % len(SHAPES_CLASSES))[torch.randperm(n, generator=g)]
    radius = (0.20 + 0.20 * rand(n)) * s
    center = radius.unsqueeze(1) * 0.7 + rand(n, 2) * (s - 1.4 * radius.unsqueeze(1))
    theta = rand(n) * 2 * math.pi
    aspect = 0.45 + 0.15 * rand(n)  # ellipse minor/major axis
    jitter = 0.85 + 0.15 * rand(n)  # mild squash of every shape
    fg = rand(n, 3)
    shade_angle, shade_amount = rand(n) * 2 * math.pi, 0.35 * rand(n)
    kind = torch.randint(0, 4, (n,), generator=g)
    c1, c2 = rand(n, 3), rand(n, 3)
    c2 = c1 + (c2 - c1) * (0.15 + 0.45 * rand(n, 1))  # varied, moderate texture contrast
    bg_angle, period, phase = rand(n) * math.pi, (3 + 5 * rand(n)) * s / 32, rand(n) * 2 * math.pi
    grids = rand(n, 1, 6, 6)
    noise_std = 0.03 * rand(n)
    # Keep the shape visible: if its colour is close to the background's mean colour, shift it.
    mean_bg = (c1 + c2) / 2
    close = (fg - mean_bg).norm(dim=1, keepdim=True) < 0.5
    fg = torch.where(close, torch.remainder(mean_bg + 0.5, 1.0), fg)

    ss = s * _SUPERSAMPLE
    axis = (torch.arange(ss, dtype=torch.float32) + 0.5) / _SUPERSAMPLE
    out = np.empty((n, 3, s, s), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        m = sl.stop - sl.start
        dx = axis.view(1, 1, ss) - center[sl, 0].view(m, 1, 1)
        dy = axis.view(1, ss, 1) - center[sl, 1].view(m, 1, 1)
        cos_t, sin_t = torch.cos(theta[sl]).view(m, 1, 1), torch.sin(theta[sl]).view(m, 1, 1)
        r = radius[sl].view(m, 1, 1)
        u = (cos_t * dx + sin_t * dy) / r
        v = (-sin_t * dx + cos_t * dy) / (r * jitter[sl].view(m, 1, 1))
        mask = torch.zeros(m, ss, ss)
        lab = labels[sl]
        for c in range(len(SHAPES_CLASSES)):
            idx = (lab == c).nonzero().squeeze(1)
            if idx.numel():
                mask[idx] = _shape_mask(c, u[idx], v[idx], aspect[sl][idx].view(-1, 1, 1)).float()
        # Shading: the shape's colour brightens along a random direction across it.
        ca = torch.cos(shade_angle[sl]).view(m, 1, 1)
        sa = torch.sin(shade_angle[sl]).view(m, 1, 1)
        shade = 1 + shade_amount[sl].view(m, 1, 1) * (ca * u + sa * v).clamp(-1, 1)
        alpha = F.avg_pool2d(mask.unsqueeze(1), _SUPERSAMPLE)  # (m, 1, s, s)
        shade = F.avg_pool2d(shade.unsqueeze(1), _SUPERSAMPLE)
        fg_img = (fg[sl].view(m, 3, 1, 1) * shade).clamp(0, 1)
        bg = _backgrounds(kind[sl], c1[sl], c2[sl], bg_angle[sl], period[sl], phase[sl], grids[sl], s)
        img = bg * (1 - alpha) + fg_img * alpha
        img = img + noise_std[sl].view(m, 1, 1, 1) * torch.randn(m, 3, s, s, generator=g)
        out[sl] = (img * 255).round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out, labels.numpy().astype(np.int64)


class Shapes(ArrayDataset):
    """The shapes dataset, one split, as an :class:`ArrayDataset` (uint8 (3, S, S), int label)."""

    classes = SHAPES_CLASSES

    def __init__(self, num_images: int, *, train: bool = True, seed: int = 0, image_size: int = 32) -> None:
        self.train, self.seed = train, seed
        images, labels = generate_shapes(
            num_images, seed=seed, split="train" if train else "test", image_size=image_size
        )
        super().__init__(images, labels)
