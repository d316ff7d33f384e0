"""Robustness metrics of an error table (method.md section 3): pure functions, no I/O, no torch.

An error table is a DataFrame with columns corruption, severity, error (top-1 error in percent),
one row per (corruption, severity), and optionally the row ("clean", 0) for the clean test set;
:func:`auxtrain.evaluation.corruption_errors` returns one and ``errors.csv`` stores one.

Each metric is a small function of the table's *cells* (``{(corruption, severity): error}``, the
clean row excluded) so that it can be tested by hand and reused; :func:`mce` composes them into
the summary that ``summary.json`` and the reports show. A new metric is one function here plus one
entry in :func:`mce`.

Conventions: mCE on CIFAR is the *unnormalised* mean of E(c, s) over the 15 benchmark corruptions
at the 5 severities (AugMix, RobustBench); the normalised and relative mCE of ImageNet-C divide by
a baseline model's errors. A mean over no cells is NaN. The headline ``mce`` (and RobustBench's
``corruptions_acc``) is NaN unless all 15 x 5 cells are present, because a mean over a subset is
not comparable with published numbers (it depends on which corruptions are missing); the mean over
the benchmark cells that are present is kept apart as ``mce_partial``, with its cell count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from corruptions import canonical_order, family_of, get_corruption_names

__all__ = ["Cells", "check_errors", "cells", "clean_error", "family", "benchmark_mean", "benchmark_cells",
           "complete_mce", "robustbench_fields", "extra_mean", "mean_all", "family_means", "severity_means",
           "is_complete", "missing", "normalized_ce", "relative_ce", "baseline_means",
           "normalized_ce_of_means", "relative_ce_of_means", "seen_means", "mce"]

Cells = dict[tuple[str, int], float]
CLEAN = "clean"  # corruption name of the clean test set's row (severity 0)
BENCHMARK_SEVERITIES = range(1, 6)


def _mean(values: Iterable[float]) -> float:
    values = [float(v) for v in values]
    return float(np.mean(values)) if values else math.nan


def family(name: str) -> str | None:
    """The family of a corruption, or None for a name outside the vocabulary (a custom -C file)."""
    try:
        return family_of(name)
    except ValueError:
        return None


def check_errors(errors: pd.DataFrame, what: str = "errors") -> pd.DataFrame:
    """``errors`` if it is an error table with one row per (corruption, severity); else ValueError."""
    if not isinstance(errors, pd.DataFrame) or not {"corruption", "severity", "error"} <= set(errors.columns):
        raise ValueError(f"{what} must be a DataFrame with columns corruption, severity, error (as returned "
                         f"by corruption_errors or read_errors), got {type(errors).__name__}")
    dup = errors.duplicated(["corruption", "severity"])
    if dup.any():
        pairs = errors[dup][["corruption", "severity"]].values.tolist()
        raise ValueError(f"{what} has duplicate rows for {pairs}; keep one row per (corruption, severity)")
    return errors


def cells(errors: pd.DataFrame) -> Cells:
    """``{(corruption, severity): error}`` of the corrupted rows (the clean row left out)."""
    rows = errors[errors["corruption"] != CLEAN]
    return {(str(c), int(s)): float(e) for c, s, e in zip(rows["corruption"], rows["severity"], rows["error"],
                                                         strict=True)}


def clean_error(errors: pd.DataFrame) -> float:
    """The error on the clean test set (the ("clean", 0) row), NaN when the table has none."""
    clean = errors.loc[errors["corruption"] == CLEAN, "error"]
    return float(clean.iloc[0]) if len(clean) else math.nan


def benchmark_mean(values: Cells) -> float:
    """Mean E(c, s) over the cells of the 15 benchmark corruptions present (the partial mCE)."""
    common = set(get_corruption_names("common"))
    return _mean(e for (c, _), e in values.items() if c in common)


def benchmark_cells(values: Cells) -> int:
    """How many cells :func:`benchmark_mean` averages (75 on a complete 15 x 5 set)."""
    common = set(get_corruption_names("common"))
    return sum(c in common for c, _ in values)


def complete_mce(values: Cells) -> float:
    """Unnormalised mCE: mean E(c, s) over the 15 benchmark corruptions x severities 1-5.

    NaN unless all 75 cells are present: a mean over a subset is not the benchmark number.
    """
    if not is_complete(values):
        return math.nan
    return _mean(values[c, s] for c in get_corruption_names("common") for s in BENCHMARK_SEVERITIES)


def robustbench_fields(values: Cells, clean: float) -> dict[str, float]:
    """RobustBench's headline fields of a corruptions entry, in percent.

    ``clean_acc`` is the top-1 accuracy on the clean test set; ``corruptions_acc`` the mean top-1
    accuracy over the 15 benchmark corruptions x 5 severities, i.e. 100 minus :func:`complete_mce`
    (NaN unless complete, for the same reason). RobustBench's ``benchmark()`` returns fractions in
    [0, 1], but the model_info JSON entries of its leaderboard store both fields as percentages
    (100 x the fraction, rounded to 2 decimals); the percent form is used here because every other
    number of the summary is a percentage, and it is not rounded.
    """
    return {"clean_acc": 100.0 - clean, "corruptions_acc": 100.0 - complete_mce(values)}


def extra_mean(values: Cells) -> float:
    """Mean E(c, s) over the 4 extra corruptions (speckle_noise, gaussian_blur, spatter, saturate)."""
    extra = set(get_corruption_names("extra"))
    return _mean(e for (c, _), e in values.items() if c in extra)


def mean_all(values: Cells) -> float:
    """Mean over every corruption cell (the 19-corruption mean on a full -C set)."""
    return _mean(values.values())


def family_means(values: Cells) -> dict[str, float]:
    """Family -> mean E(c, s) over its corruptions present, families in benchmark order."""
    by_family: dict[str, list[float]] = {}
    for name in canonical_order({c for c, _ in values}):
        fam = family(name)
        if fam is not None:
            by_family.setdefault(fam, []).extend(e for (c, _), e in values.items() if c == name)
    return {fam: _mean(errs) for fam, errs in by_family.items()}


def severity_means(values: Cells) -> dict[int, float]:
    """Severity -> mean E(c, s) over the corruptions present at that severity."""
    return {s: _mean(e for (_, t), e in values.items() if t == s) for s in sorted({s for _, s in values})}


def is_complete(values: Cells) -> bool:
    """True when all 15 benchmark corruptions are present at all 5 severities (a comparable mCE)."""
    return all((c, s) in values for c in get_corruption_names("common") for s in BENCHMARK_SEVERITIES)


def missing(values: Cells) -> list[str]:
    """The names of the 19 corruptions without any row, in benchmark order."""
    present = {c for c, _ in values}
    return [c for c in get_corruption_names("all") if c not in present]


def _shared(values: Cells, base: Cells) -> dict[str, list[tuple[str, int]]]:
    """Corruption -> the (corruption, severity) keys both tables hold, in benchmark order."""
    shared = [k for k in values if k in base]
    return {c: [k for k in shared if k[0] == c] for c in canonical_order({c for c, _ in shared})}


def normalized_ce(values: Cells, base: Cells) -> dict[str, float]:
    """ImageNet-C corruption error: CE_c = 100 * sum_s E(c, s) / sum_s E_base(c, s), over shared cells."""
    out = {}
    for c, keys in _shared(values, base).items():
        denom = sum(base[k] for k in keys)
        out[c] = 100.0 * sum(values[k] for k in keys) / denom if denom > 0 else math.nan
    return out


def relative_ce(values: Cells, clean: float, base: Cells, base_clean: float) -> dict[str, float]:
    """Relative CE: 100 * sum_s (E - E_clean) / sum_s (E_base - E_base_clean), over shared cells.

    Empty without both clean errors (the numerator and denominator need them).
    """
    if math.isnan(clean) or math.isnan(base_clean):
        return {}
    out = {}
    for c, keys in _shared(values, base).items():
        denom = sum(base[k] - base_clean for k in keys)
        num = sum(values[k] - clean for k in keys)
        out[c] = 100.0 * num / denom if denom != 0 else math.nan
    return out


def baseline_means(baseline: pd.DataFrame) -> tuple[dict[str, float], float]:
    """``({corruption: mean error over severities 1-5}, clean error)`` of a per-corruption baseline.

    A baseline table without a severity column holds one error per corruption, the mean over
    severities 1-5 (how ImageNet-C's AlexNet errors are published, :mod:`auxtrain.baselines`), and
    optionally the ("clean") row.
    """
    if not isinstance(baseline, pd.DataFrame) or not {"corruption", "error"} <= set(baseline.columns):
        raise ValueError("a per-corruption baseline must be a DataFrame with columns corruption, error")
    if baseline["corruption"].duplicated().any():
        raise ValueError("a per-corruption baseline has one row per corruption; it has duplicates")
    means = {str(c): float(e) for c, e in zip(baseline["corruption"], baseline["error"], strict=True)}
    return {c: e for c, e in means.items() if c != CLEAN}, means.get(CLEAN, math.nan)


def _full_means(values: Cells) -> dict[str, float]:
    """Corruption -> mean E(c, s) over severities 1-5, for the corruptions with all 5 present."""
    names = canonical_order({c for c, _ in values})
    return {c: _mean(values[c, s] for s in BENCHMARK_SEVERITIES) for c in names
            if all((c, s) in values for s in BENCHMARK_SEVERITIES)}


def normalized_ce_of_means(values: Cells, base_means: Mapping[str, float]) -> dict[str, float]:
    """CE_c = 100 * mean_s E(c, s) / E_base(c) against per-corruption means (ImageNet-C's AlexNet).

    Equal to :func:`normalized_ce` with per-severity baseline errors; defined only for the
    corruptions with all 5 severities, since the baseline's number is a mean over the 5.
    """
    return {c: 100.0 * e / base_means[c] if base_means[c] > 0 else math.nan
            for c, e in _full_means(values).items() if c in base_means}


def relative_ce_of_means(values: Cells, clean: float, base_means: Mapping[str, float],
                         base_clean: float) -> dict[str, float]:
    """Relative CE_c = 100 * (mean_s E(c, s) - E_clean) / (E_base(c) - E_base_clean), per-corruption means."""
    if math.isnan(clean) or math.isnan(base_clean):
        return {}
    out = {}
    for c, e in _full_means(values).items():
        if c in base_means:
            denom = base_means[c] - base_clean
            out[c] = 100.0 * (e - clean) / denom if denom != 0 else math.nan
    return out


def _benchmark_mean_of(per_corruption: Mapping[str, float]) -> float:
    common = set(get_corruption_names("common"))
    return _mean(v for c, v in per_corruption.items() if c in common)


def seen_means(values: Cells, seen: Sequence[str]) -> dict[str, Any]:
    """``seen`` (the trained-on corruptions present), ``seen_mean`` and ``unseen_mean`` of the cells."""
    seen_set = set(seen)
    return {"seen": [c for c in canonical_order({c for c, _ in values}) if c in seen_set],
            "seen_mean": _mean(e for (c, _), e in values.items() if c in seen_set),
            "unseen_mean": _mean(e for (c, _), e in values.items() if c not in seen_set)}


def mce(errors: pd.DataFrame, baseline: pd.DataFrame | None = None,
        seen: Sequence[str] | None = None) -> dict[str, Any]:
    """Summary of an error table (all values in percent; NaN where the inputs lack the rows).

    Keys: ``mce`` (mean E(c, s) over the 15 benchmark corruptions x 5 severities; NaN unless all 75
    cells are present), ``mce_partial`` and ``mce_partial_cells`` (the mean over the benchmark
    cells present and their count: a number for incomplete sets, not comparable across sets),
    ``clean_acc`` and ``corruptions_acc`` (RobustBench's accuracies, see
    :func:`robustbench_fields`), ``mean_extra`` (the 4 extra), ``mean_all`` (every corruption
    row), ``families`` (family -> mean), ``severity_means`` (severity -> mean over corruptions),
    ``clean_error``, ``complete`` (all 15 x 5 present), ``missing`` (of the 19 names, those
    without rows). With ``baseline`` (another model's table): ``ce`` (corruption -> 100 * sum_s E /
    sum_s E_base), ``normalized_mce`` (mean CE over the benchmark corruptions), ``relative_ce`` and
    ``relative_mce`` (errors minus clean error, needs both clean rows), over the (corruption,
    severity) pairs both tables hold; a baseline without a severity column holds per-corruption
    means (:func:`baseline_means`: ImageNet-C's AlexNet), and then a corruption counts only with all
    5 severities present. With ``seen`` (the corruptions trained on): ``seen`` (those
    present), ``seen_mean`` and ``unseen_mean``.
    """
    errors = check_errors(errors, "errors")
    values, clean = cells(errors), clean_error(errors)
    out: dict[str, Any] = {
        "mce": complete_mce(values),
        "mce_partial": benchmark_mean(values),
        "mce_partial_cells": benchmark_cells(values),
        **robustbench_fields(values, clean),
        "mean_extra": extra_mean(values),
        "mean_all": mean_all(values),
        "families": family_means(values),
        "severity_means": severity_means(values),
        "clean_error": clean,
        "complete": is_complete(values),
        "missing": missing(values),
    }
    per_corruption = isinstance(baseline, pd.DataFrame) and "severity" not in baseline.columns
    if per_corruption:  # per-corruption means (ImageNet-C's AlexNet)
        base_means, base_clean = baseline_means(baseline)
        out["ce"] = normalized_ce_of_means(values, base_means)
        out["normalized_mce"] = _benchmark_mean_of(out["ce"])
        out["relative_ce"] = relative_ce_of_means(values, clean, base_means, base_clean)
        out["relative_mce"] = _benchmark_mean_of(out["relative_ce"])
    elif baseline is not None:
        baseline = check_errors(baseline, "baseline")
        base = cells(baseline)
        out["ce"] = normalized_ce(values, base)
        out["normalized_mce"] = _benchmark_mean_of(out["ce"])
        out["relative_ce"] = relative_ce(values, clean, base, clean_error(baseline))
        out["relative_mce"] = _benchmark_mean_of(out["relative_ce"])
    if seen is not None:
        out.update(seen_means(values, seen))
    return out
