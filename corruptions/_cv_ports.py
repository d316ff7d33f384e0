"""OpenCV operations of spatter's water mode, as batched torch ops on 8-bit-valued float images.

The reference builds its water-drop mask with cv2.Canny, cv2.distanceTransform, cv2.equalizeHist,
cv2.blur and cv2.filter2D on uint8 images; each function here follows OpenCV's documented
algorithm for a whole batch at once (the docstrings say where it can differ), and
``water_mask`` chains them as the reference does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def box3(x: torch.Tensor) -> torch.Tensor:
    """cv2.blur(x, (3, 3)): 3x3 mean, border REFLECT_101 (float result), as shifted sums."""
    h, w = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1), mode="reflect")
    rows = p[..., 0:h, :] + p[..., 1:h + 1, :] + p[..., 2:h + 2, :]
    return (rows[..., 0:w] + rows[..., 1:w + 1] + rows[..., 2:w + 2]) * (1 / 9)


def emboss(x: torch.Tensor) -> torch.Tensor:
    """cv2.filter2D(x, CV_8U, [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]) before saturation
    (border REFLECT_101), as shifted sums."""
    h, w = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1), mode="reflect")

    def at(dy: int, dx: int) -> torch.Tensor:
        return p[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    return (2 * (at(1, 1) - at(-1, -1)) + (at(1, 0) - at(-1, 0)) + (at(0, 1) - at(0, -1))) + at(0, 0)


def canny(img: torch.Tensor, low: float = 50, high: float = 150) -> torch.Tensor:
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
        grown = cand & dilate3(edges)
        if torch.equal(grown, edges):
            return edges
        edges = grown


def dilate3(mask: torch.Tensor) -> torch.Tensor:
    """3x3 binary dilation of a (..., H, W) bool mask (8-connected neighbourhood)."""
    p = F.pad(mask, (1, 1, 1, 1))
    h, w = mask.shape[-2:]
    rows = p[..., :, 0:w] | p[..., :, 1:w + 1] | p[..., :, 2:w + 2]
    return rows[..., 0:h, :] | rows[..., 1:h + 1, :] | rows[..., 2:h + 2, :]


# cv2.distanceTransform(DIST_L2, 5) is a 5x5 chamfer distance with these move costs.
_A, _B, _C = 1.0, 1.4, 2.1969


def distance_to_edges(edges: torch.Tensor, cap: float) -> torch.Tensor:
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


def equalize_hist(img: torch.Tensor) -> torch.Tensor:
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


def water_mask(liquid: torch.Tensor) -> torch.Tensor:
    """The reference's water-drop mask m (before /max * intensity) from the liquid layer."""
    # (liquid * 255).astype(np.uint8): values above 255 wrap around (mod 256) in the reference,
    # which leaves a dark hole in the brightest drops; kept, since CIFAR-C was made that way.
    layer = torch.remainder(torch.floor(liquid * 255), 256)
    edges = canny(layer)
    dist = distance_to_edges(edges, 20.0)  # distanceTransform then THRESH_TRUNC at 20
    dist = torch.floor(box3(dist))  # cv2.blur(float) then astype(uint8)
    dist = equalize_hist(dist)
    dist = emboss(dist).clamp(0, 255)  # filter2D to CV_8U saturates
    dist = torch.round(box3(dist))  # cv2.blur on uint8 rounds
    return layer * dist
