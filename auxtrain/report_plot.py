"""``report.png``: a corruption x severity heatmap of top-1 error, and bars against a baseline.

One figure, 800 px wide (the README's width): rows are the corruptions grouped by family (the
family of each comes from :func:`corruptions.family_of`, a custom name goes under "other"), with
a line between families and the family name beside its rows; columns are the severities plus the
per-corruption mean. The corruptions the model was trained on are labelled "(seen)". The title
carries the clean error and the mCE, or on an incomplete set the partial mean under its own name.
With a baseline, a bar chart beside the heatmap compares the per-corruption means.

matplotlib is imported inside :func:`render` (Agg canvas, no pyplot, no global state), so
importing this module costs nothing.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from auxtrain import metrics
from corruptions import canonical_order

WIDTH_INCHES, DPI = 8.0, 100  # 800 px: readable at the README's width without scaling
_OTHER = "other"


def headline(summary: dict[str, Any]) -> str:
    """The title's lines under the name: clean error and mCE (or the labelled partial mean); vs baseline."""
    parts = []
    clean = summary.get("clean_error")
    parts.append("clean error n/a" if _missing(clean) else f"clean error {clean:.1f}%")
    if not _missing(summary.get("mce")):
        parts.append(f"mCE {summary['mce']:.1f}%")
    elif not _missing(summary.get("mce_partial")):
        parts.append(f"partial mCE {summary['mce_partial']:.1f}% ({summary.get('mce_partial_cells')} of 75 "
                     "cells; not comparable)")
    elif not _missing(summary.get("mean_all")):
        parts.append(f"mean of all corruptions {summary['mean_all']:.1f}% (no benchmark corruption)")
    line = "  |  ".join(parts)
    if not _missing(summary.get("normalized_mce")):
        over = "" if summary.get("complete") else " (corruptions present)"
        line += f"\nvs baseline: normalised mCE{over} {summary['normalized_mce']:.1f}%"
        if not _missing(summary.get("relative_mce")):
            line += f", relative mCE {summary['relative_mce']:.1f}%"
    return line


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _rows(errors: pd.DataFrame) -> tuple[list[str], list[str], list[int], pd.DataFrame]:
    """Corruption names in benchmark order grouped by family, their families, severities, the grid."""
    rows = errors[errors["corruption"] != metrics.CLEAN]
    grid = rows.pivot(index="corruption", columns="severity", values="error")
    names = canonical_order(grid.index)
    families = [metrics.family(n) or _OTHER for n in names]
    order = list(dict.fromkeys(families))  # families in the order of their first corruption
    paired = sorted(zip(names, families, strict=True), key=lambda p: order.index(p[1]))
    names, families = [p[0] for p in paired], [p[1] for p in paired]
    severities = sorted(int(s) for s in grid.columns)
    return names, families, severities, grid.reindex(index=names, columns=severities)


def render(errors: pd.DataFrame, summary: dict[str, Any], *, title: str,
           seen: Sequence[str] | None = None, baseline: pd.DataFrame | None = None) -> bytes:
    """The PNG bytes of the report figure. Raises ImportError without matplotlib."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names, families, severities, grid = _rows(errors)
    values = grid.to_numpy(dtype=float)
    means = np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan for r in values]).reshape(-1, 1)
    cells = np.hstack([values, np.full((len(names), 1), np.nan), means])  # a blank column before the mean
    n_rows = max(len(names), 1)
    fig = Figure(figsize=(WIDTH_INCHES, 1.9 + 0.27 * n_rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    # Row 0: the heatmap (and the bars, on the same rows); row 1: the colour bar under the heatmap.
    spec = fig.add_gridspec(2, 2 if baseline is not None else 1, height_ratios=[0.27 * n_rows, 0.12],
                            width_ratios=[3.2, 1.6] if baseline is not None else None)
    ax = fig.add_subplot(spec[0, 0])
    cmap = _cmap()
    image = ax.imshow(np.ma.masked_invalid(cells), cmap=cmap, vmin=0, vmax=100, aspect="auto",
                      interpolation="nearest")
    for i in range(len(names)):
        for j in range(cells.shape[1]):
            v = cells[i, j]
            if math.isfinite(v):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if v > 60 else "black")
    labels = [f"{n} (seen)" if seen and n in set(seen) else n for n in names]
    ax.set_yticks(range(len(names)), labels, fontsize=8)
    for tick, name in zip(ax.get_yticklabels(), names, strict=True):
        if seen and name in set(seen):
            tick.set_fontweight("bold")
            tick.set_color("#1f5fa8")
    ax.set_xticks([*range(len(severities)), len(severities) + 1], [*map(str, severities), "mean"],
                  fontsize=8)
    ax.set_xlabel("severity", fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    _family_marks(ax, families, len(severities))
    bar = fig.colorbar(image, cax=fig.add_subplot(spec[1, 0]), orientation="horizontal")
    bar.set_label("top-1 error (%)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    if baseline is not None:
        _baseline_bars(fig.add_subplot(spec[0, 1], sharey=ax), names, means[:, 0], baseline)
    fig.suptitle(f"{title}\n{headline(summary)}", fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _cmap():
    from matplotlib import colormaps

    return colormaps["YlOrRd"].with_extremes(bad="white")  # missing cells and the spacer column


def _family_marks(ax, families: list[str], n_severities: int) -> None:
    """A line between families and each family's name beside its rows (right of the mean column)."""
    start = 0
    for i in range(1, len(families) + 1):
        if i == len(families) or families[i] != families[start]:
            if i < len(families):
                ax.axhline(i - 0.5, color="black", linewidth=1.2)
            ax.text(n_severities + 1.6, (start + i - 1) / 2, families[start], ha="left", va="center",
                    fontsize=8, style="italic")
            start = i


def _baseline_bars(bx, names: list[str], means, baseline: pd.DataFrame) -> None:
    """Horizontal bars of the per-corruption mean error, this model against the baseline."""
    rows = baseline[baseline["corruption"] != metrics.CLEAN]
    theirs = [rows.loc[rows["corruption"] == n, "error"].mean() for n in names]
    y = list(range(len(names)))
    bx.barh([v - 0.2 for v in y], means, height=0.4, color="#d95f02", label="this model")
    name = {"alexnet": "AlexNet"}.get(baseline.attrs.get("baseline"), "baseline")
    bx.barh([v + 0.2 for v in y], theirs, height=0.4, color="#7f7f7f", label=name)
    bx.tick_params(axis="y", left=False, labelleft=False)
    bx.tick_params(axis="x", labelsize=7)
    bx.set_xlabel("mean error over severities (%)", fontsize=8)
    bx.set_xlim(0, 100)
    bx.legend(fontsize=7, ncol=2, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    for side in ("top", "right"):
        bx.spines[side].set_visible(False)
