"""AugMix views (Hendrycks et al., ICLR 2020), batched on uint8 tensors with one op chain per image.

An AugMix view of an image x mixes ``width`` (3) augmentation chains: each chain applies ``depth``
(1 to 3, drawn per chain) operations drawn uniformly from :data:`OPERATIONS`, each at a level
drawn uniformly from [0.1, severity] (severity 3 of 10); the chains are averaged with Dirichlet(1)
weights, and the result is blended with x by a Beta(1, 1) weight m: ``(1 - m) x + m sum_i w_i
chain_i``. Parameters and operations follow the paper's code (google-research/augmix,
augmentations.py), re-implemented here on tensors.

Operations overlapping the test corruptions are excluded, as in the paper: its optional
``color``, ``contrast``, ``brightness`` and ``sharpness`` (torchvision's ``AugMix(all_ops=False)``
drops the same four) are not in :data:`OPERATIONS`; contrast and brightness are CIFAR-C
corruptions.

Why not ``torchvision.transforms.v2.AugMix``: on a batch it draws ONE op chain per call for all
images (only the mixing weights differ per image) and it draws from the global torch RNG. The
paper draws every chain per image, and a run's views must come from its own generator so that
``--resume`` stays bit-exact. Here every image draws its own chains, levels, signs and weights
from ``generator``, and the whole batch is processed with a few tensor ops per chain step: the
images are grouped by the operation they drew (geometric ops share one ``grid_sample`` with
per-image matrices), so the cost does not grow with a Python loop over images.

Each chain works on 8-bit images like the reference (PIL); the mixed view is rounded to uint8 so
that it joins the uint8 training batch (a float [0, 1] input gives a float output).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

__all__ = ["OPERATIONS", "augmix", "augmix_views", "warp_affine"]

# The paper's default operations (augmentations.augmentations), in its order.
OPERATIONS = ("autocontrast", "equalize", "posterize", "rotate", "solarize", "shear_x", "shear_y",
              "translate_x", "translate_y")
_MAX_LEVEL = 10.0  # the paper's PARAMETER_MAX: level / 10 of each operation's maximum


def _rand(size: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(size, generator=generator, device=generator.device).to(device)


def warp_affine(images: torch.Tensor, matrices: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Per-image affine warp of a uint8 batch, zero fill outside, like PIL's ``Image.transform(AFFINE)``.

    ``matrices`` (n, 2, 3) map each output pixel's continuous coordinates (x, y), pixel centres at
    k + 0.5, to the input coordinates it samples (PIL's convention). Returns uint8 (rounded).
    """
    n, _, h, w = images.shape
    m = matrices.to(images.device, torch.float32)
    scale = torch.tensor([w / 2.0, h / 2.0], device=images.device)
    a = m[:, :, :2] * scale.view(1, 1, 2) / scale.view(1, 2, 1)  # S^-1 A S
    t = ((m[:, :, :2] @ scale.view(1, 2, 1)).squeeze(2) + m[:, :, 2] - scale) / scale  # S^-1 (A c + b - c)
    theta = torch.cat([a, t.unsqueeze(2)], dim=2)
    grid = F.affine_grid(theta, [n, 3, h, w], align_corners=False)
    out = F.grid_sample(images.float(), grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _affine_matrices(op: torch.Tensor, level: torch.Tensor, sign: torch.Tensor, h: int,
                     w: int) -> torch.Tensor:
    """(n, 2, 3) output-to-input matrices of the geometric operations ``op`` (indices into
    OPERATIONS) at per-image levels and signs, with the paper's parameters."""
    n = level.shape[0]
    m = torch.zeros(n, 2, 3, device=level.device)
    m[:, 0, 0] = m[:, 1, 1] = 1.0
    name = {k: op == OPERATIONS.index(k) for k in ("rotate", "shear_x", "shear_y", "translate_x",
                                                    "translate_y")}
    # rotate: PIL's rotate(degrees), counter-clockwise about the centre, int(level * 30 / 10) degrees.
    a = torch.where(name["rotate"], -torch.floor(level * 30 / _MAX_LEVEL) * sign * math.pi / 180, 0.0)
    cos, sin = torch.cos(a), torch.sin(a)
    cx, cy = w / 2.0, h / 2.0
    shear = level * 0.3 / _MAX_LEVEL * sign
    m[:, 0, 0], m[:, 1, 1] = cos, cos
    m[:, 0, 1] = torch.where(name["shear_x"], shear, sin)
    m[:, 1, 0] = torch.where(name["shear_y"], shear, -sin)
    m[:, 0, 2] = torch.where(name["translate_x"], torch.floor(level * (w / 3) / _MAX_LEVEL) * sign,
                             cx - cos * cx - sin * cy)
    m[:, 1, 2] = torch.where(name["translate_y"], torch.floor(level * (h / 3) / _MAX_LEVEL) * sign,
                             cy + sin * cx - cos * cy)
    return m


def _colour(op: str, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """One colour operation on a uint8 batch, each image at its own level (the paper's parameters)."""
    if op == "autocontrast":
        return TF.autocontrast(x)
    if op == "equalize":
        return TF.equalize(x)
    if op == "posterize":  # keep 4 - int(level * 4 / 10) bits
        bits = 4 - torch.floor(level * 4 / _MAX_LEVEL).long()
        mask = ((0xFF << (8 - bits)) & 0xFF).to(torch.uint8)
        return x & mask.view(-1, 1, 1, 1)
    if op == "solarize":  # invert the pixels at or above 256 - int(level * 256 / 10)
        threshold = (256 - torch.floor(level * 256 / _MAX_LEVEL)).view(-1, 1, 1, 1)
        return torch.where(x >= threshold, 255 - x, x)
    raise ValueError(f"unknown AugMix colour operation {op!r}")


def _apply_step(chains: torch.Tensor, op: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> None:
    """One chain step in place: every image its own operation ``op`` (-1: none), grouped by kind."""
    geometric = (op >= OPERATIONS.index("rotate")) & (op != OPERATIONS.index("solarize"))
    index = geometric.nonzero().squeeze(1)
    if index.numel():
        matrices = _affine_matrices(op[index], level[index], sign[index], chains.shape[2], chains.shape[3])
        chains[index] = warp_affine(chains[index], matrices)
    for name in ("autocontrast", "equalize", "posterize", "solarize"):
        index = (op == OPERATIONS.index(name)).nonzero().squeeze(1)
        if index.numel():
            chains[index] = _colour(name, chains[index], level[index])


def augmix(images: torch.Tensor, generator: torch.Generator, *, severity: int = 3, width: int = 3,
           depth: int = -1) -> torch.Tensor:
    """One AugMix view of every image of ``images`` (B, 3, H, W), uint8 (or float in [0, 1]).

    ``severity`` (1..10) bounds the operation levels, ``width`` is the number of chains and
    ``depth`` their length (-1: 1 to 3, drawn per chain). Every draw comes from ``generator``, on
    its device; the same generator state gives the same views. Returns the shape, dtype and
    device of ``images``.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise TypeError(f"images must be a (B, 3, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if not 1 <= severity <= _MAX_LEVEL or width < 1 or depth == 0 or depth > 10:
        raise ValueError(f"severity={severity} must be 1..10, width={width} >= 1, depth={depth} -1 or 1..10")
    is_float = images.is_floating_point()
    x = (images * 255).round().clamp(0, 255).to(torch.uint8) if is_float else images
    b, dev = x.shape[0], x.device
    chains = x.repeat(width, 1, 1, 1)  # chain i of image j at row i * b + j
    n = chains.shape[0]
    if depth > 0:
        depths = torch.full((n,), depth, device=dev)
    else:
        depths = torch.randint(1, 4, (n,), generator=generator, device=generator.device).to(dev)
    for step in range(int(depths.max())):
        op = torch.randint(0, len(OPERATIONS), (n,), generator=generator, device=generator.device).to(dev)
        level = _rand((n,), generator, dev) * (severity - 0.1) + 0.1  # uniform [0.1, severity)
        sign = torch.where(_rand((n,), generator, dev) < 0.5, -1.0, 1.0)
        op = torch.where(depths > step, op, -1)  # a chain shorter than this step is left as it is
        _apply_step(chains, op, level, sign)
    # Dirichlet(1, ..., 1) chain weights (normalised exponentials) and a Beta(1, 1) = U(0, 1) blend.
    weights = -torch.log1p(-_rand((width, b), generator, dev))
    weights = weights / weights.sum(0, keepdim=True)
    m = _rand((b,), generator, dev).view(b, 1, 1, 1)
    mixed = (chains.float().view(width, b, *x.shape[1:]) * weights.view(width, b, 1, 1, 1)).sum(0)
    out = ((1 - m) * x.float() + m * mixed).round_().clamp_(0, 255)
    return out / 255 if is_float else out.to(torch.uint8)


def augmix_views(images: torch.Tensor, generator: torch.Generator, k: int = 2,
                 **options: int) -> list[torch.Tensor]:
    """``k`` independent AugMix views of ``images`` (the JSD loss uses two), in one batched call.

    ``options`` are those of :func:`augmix`. Image i of every view is a view of image i.
    """
    if k < 1:
        raise ValueError(f"k={k} must be at least 1")
    stacked = augmix(images.repeat(k, *([1] * (images.ndim - 1))), generator, **options)
    return list(stacked.chunk(k))
