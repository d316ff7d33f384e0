"""Paired corrupted views for auxiliary training: branch syntax and batched view construction.

A *branch* is a set of corruptions; each auxiliary head sees one branch's view of the batch. In
``--corruptions noise,blur`` every comma-separated item is one branch; an item is anything
:func:`corruptions.resolve_names` accepts (a family, a subset, a corruption name), or several of
these joined by ``+`` (their union, e.g. ``gaussian_noise+defocus_blur``). ``none`` alone means
no branch (standard training).

Besides corruptions, an item may name a *training view* that is not a test corruption:
``augmix`` (an AugMix view, :mod:`auxtrain.data.augmix`), one of the authors' four views
(``authors_blur``, ``authors_noise``, ``authors_jitter``, ``authors_rotate``,
:mod:`auxtrain.data.authors_views`) or their family ``authors``. ``--corruptions augmix`` gives an
auxiliary head with selective BN for AugMix views; ``--corruptions authors`` one head for the
four authors' views (each image draws one), and
``authors_blur,authors_noise,authors_jitter,authors_rotate`` four heads, as in their code. These
views have no severities (``--severities`` applies to the corruptions only) and are never in a
-C set: the ``corruptions`` library, which defines the benchmark, does not know them.

:func:`make_views` corrupts the *same* images once per branch, so all views are pixel-aligned
with the clean batch (training corrupts the cropped and flipped clean batch:
:func:`auxtrain.data.augment_with_views`): each image independently
draws one member of the branch and one severity. The corruption engine (``corruptions.corrupt``)
runs once per drawn member on the group of images that drew it; there is no loop over images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

import corruptions

__all__ = ["VIEW_NAMES", "VIEW_FAMILIES", "parse_branches", "make_views", "seen_corruptions"]

# Training views that are not corruptions (their kernels: _view_kernel), and their families.
VIEW_NAMES = ("augmix", "authors_blur", "authors_noise", "authors_jitter", "authors_rotate")
VIEW_FAMILIES = {"authors": ("authors_blur", "authors_noise", "authors_jitter", "authors_rotate")}


def _view_kernel(name: str):
    """The kernel ``(images, generator) -> images`` of a training view (imported on first use)."""
    if name == "augmix":
        from auxtrain.data.augmix import augmix

        return augmix
    from auxtrain.data.authors_views import AUTHORS_VIEWS

    return AUTHORS_VIEWS[name]


def _expand(token: str, text: str) -> list[str]:
    if token == "none":
        raise ValueError(f"corruptions={text!r}: 'none' cannot be combined with other branches; "
                         "pass 'none' alone for standard training")
    if token in VIEW_FAMILIES:
        return list(VIEW_FAMILIES[token])
    if token in VIEW_NAMES:
        return [token]
    try:
        return corruptions.resolve_names(token, what=f"corruptions={text!r}")
    except ValueError as exc:
        raise ValueError(f"{exc}, or the training views {', '.join([*VIEW_FAMILIES, *VIEW_NAMES])}; join "
                         "them by '+' within a branch and ',' between branches, or pass 'none'") from None


def parse_branches(text: str) -> list[tuple[str, ...]]:
    """Parses branch syntax into one tuple of corruption names per branch.

    ``"noise,blur"`` -> ``[(gaussian_noise, shot_noise, impulse_noise), (defocus_blur, ...)]``;
    ``"gaussian_noise+fog,contrast"`` -> ``[("gaussian_noise", "fog"), ("contrast",)]``;
    ``"augmix,authors"`` -> ``[("augmix",), ("authors_blur", ..., "authors_rotate")]``;
    ``"none"`` -> ``[]``. Family members come in the canonical CIFAR-C order. A corruption or
    view may appear only once across all branches (a repeat is almost certainly a typo).
    """
    if not isinstance(text, str):
        raise TypeError(f"corruptions must be a string like 'noise,blur', got {type(text).__name__}")
    cleaned = text.strip().lower()
    if cleaned == "none":
        return []
    if not cleaned:
        raise ValueError("corruptions='' is empty; pass e.g. 'noise,blur', or 'none' for standard training")
    branches: list[tuple[str, ...]] = []
    seen: dict[str, int] = {}
    for b, item in enumerate(cleaned.split(",")):
        tokens = [t.strip() for t in item.split("+")]
        if not all(tokens):
            raise ValueError(f"corruptions={text!r}: empty branch or '+' term in item {item.strip()!r}")
        names: list[str] = []
        for token in tokens:
            for name in _expand(token, text):
                if name in seen:
                    where = ("twice in one branch" if seen[name] == b
                             else f"in branches {seen[name] + 1} and {b + 1}")
                    raise ValueError(
                        f"corruptions={text!r}: {name!r} appears {where}; each corruption may be used once"
                    )
                seen[name] = b
                names.append(name)
        branches.append(tuple(names))
    return branches


def seen_corruptions(branches: Sequence[Sequence[str]]) -> list[str]:
    """The test corruptions among the branches' members (training views such as augmix left out)."""
    return [name for branch in branches for name in branch if name not in VIEW_NAMES]


def make_views(
    images: torch.Tensor,
    branches: Sequence[Sequence[str]] | str,
    generator: torch.Generator,
    severities: Sequence[int] | str = (1, 2, 3, 4, 5),
) -> list[torch.Tensor]:
    """One corrupted copy of ``images`` per branch, pixel-aligned with ``images``.

    Args:
        images: (B, 3, H, W) uint8 (or float in [0, 1]) batch on any device; it is not modified.
        branches: as returned by :func:`parse_branches` (or branch-syntax text).
        generator: every random draw (member, severity, corruption noise) comes from it, on its
            device: the same generator state gives the same views.
        severities: the severities to draw from, uniformly (default 1..5; or text like "1-5");
            a training view (augmix, authors_*) draws one too, to keep the draw order, but has
            no severity.

    Returns a list with one tensor per branch, each of the shape, dtype and device of ``images``;
    image i of every view is a corruption of image i of ``images``.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise TypeError(f"images must be a (B, 3, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if isinstance(branches, str):
        branches = parse_branches(branches)
    sev_values = torch.tensor(corruptions.parse_severities(
        severities if isinstance(severities, str) else tuple(severities)))
    known = set(corruptions.get_corruption_names("all")) | set(VIEW_NAMES)
    b = images.shape[0]
    views = []
    for members in branches:
        members = tuple(members)
        if not members:
            raise ValueError("a branch must name at least one corruption; got an empty branch")
        unknown = [m for m in members if m not in known]
        if unknown:
            raise ValueError(f"unknown corruption or view names {unknown} in branch {members}; "
                             "build branches with parse_branches")
        member = torch.randint(0, len(members), (b,), generator=generator, device=generator.device).cpu()
        pick = torch.randint(0, len(sev_values), (b,), generator=generator, device=generator.device).cpu()
        severity = sev_values[pick]
        view = torch.empty_like(images)
        for m, name in enumerate(members):
            index = (member == m).nonzero().squeeze(1)
            if index.numel() == 0:
                continue
            index_dev = index.to(images.device)
            if name in VIEW_NAMES:
                view[index_dev] = _view_kernel(name)(images.index_select(0, index_dev), generator)
                continue
            view[index_dev] = corruptions.corrupt(
                images.index_select(0, index_dev), name, severity=severity[index], generator=generator
            )
        views.append(view)
    return views
