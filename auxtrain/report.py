"""The robustness report: CSV tables, summary.json, a Markdown report and a plot, written atomically.

Files written by :func:`write_report` into ``out_dir``:

* ``errors.csv``: long format, one row per (corruption, severity): corruption, severity, error, n
  (severity 0 = the clean test set);
* ``accuracy.csv``: the same rows as top-1 accuracy in percent;
* ``unaggregated_results.csv``: the 15 benchmark corruptions' accuracies (fractions) in the layout
  of RobustBench's file of that name (:func:`unaggregated_table`);
* ``report.csv``: wide table, corruption x severity errors with family, mean and seen columns;
* ``summary.json``: the numbers of :func:`auxtrain.metrics.mce` (NaN written as null);
* ``report.md``: summary table + corruption x severity table;
* ``report.png``: a corruption x severity heatmap of error, families grouped and the seen
  corruptions marked, clean error and mCE in the title, and bars of the per-corruption means
  against the baseline when one is given (:mod:`auxtrain.report_plot`); should matplotlib be
  missing, it is skipped with a warning and a report.png left by an earlier report is removed.
* ``errors_bn_adapted.csv``: with test-time BN adaptation, the same rows with adapted statistics
  (summary.json then holds ``bn_adapted``, ``mce_bn_adapted`` and ``clean_error_bn_adapted``, and
  report.md a section comparing the two);

Everything is rendered in memory first, so a failure leaves existing files untouched. The numbers
come from :mod:`auxtrain.metrics`; this module only formats and writes them.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from auxtrain import baselines, metrics
from auxtrain.run_dir import atomic_write_bytes
from corruptions import canonical_order, get_corruption_names


def read_errors(source: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """An error table from a DataFrame, a report directory (its errors.csv) or a long-format CSV file.

    The name of a shipped baseline (``"alexnet"``, :mod:`auxtrain.baselines`) gives its published
    per-corruption errors; a folder of that name is passed as ``./alexnet``.
    """
    if isinstance(source, pd.DataFrame):
        return source
    if baselines.is_baseline_name(source):
        return baselines.load_baseline(source)
    path = Path(source)
    if path.is_dir():
        path = path / "errors.csv"
    if not path.is_file():
        raise ValueError(f"{path} does not exist; pass a report directory written by `auxtrain eval` or its "
                         f"errors.csv")
    try:
        table = pd.read_csv(path)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path} is not a readable CSV ({exc}); pass an errors.csv from `auxtrain eval`") \
            from None
    if not {"corruption", "severity", "error"} <= set(table.columns):
        raise ValueError(f"{path} lacks the columns corruption, severity, error (it has "
                         f"{list(table.columns)}); pass an errors.csv from `auxtrain eval`")
    return table


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any) -> str:
    if _missing(value):
        return "n/a"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _mce_rows(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    """The mCE row, and on an incomplete set why it is n/a plus the labelled partial mean.

    The partial mean depends on which cells are missing, so it is never shown as "mCE".
    """
    label = "mCE (15 benchmark corruptions, unnormalised)"
    partial, count = summary.get("mce_partial"), summary.get("mce_partial_cells")
    if not _missing(summary.get("mce")) or _missing(partial):
        return [(label, summary.get("mce"))]
    total = len(get_corruption_names("common")) * len(metrics.BENCHMARK_SEVERITIES)
    return [(label, f"n/a: needs all {total} benchmark cells (15 x 5), {count} present"),
            (f"partial mCE: mean over the {count} benchmark cells present (not comparable)", partial)]


def summary_table(summary: dict[str, Any]) -> str:
    """The headline numbers of a summary as a Markdown table."""
    rows = [("clean error", summary.get("clean_error")), *_mce_rows(summary)]
    # The "extra" family's mean is mean_extra: one row for it, labelled as outside the mCE.
    rows += [(f"{family} mean", value) for family, value in summary.get("families", {}).items()
             if family != "extra"]
    rows += [("mean of the 4 extra corruptions (not in the mCE)", summary.get("mean_extra")),
             ("mean of all corruptions", summary.get("mean_all"))]
    if "normalized_mce" in summary:
        against = "AlexNet (ImageNet-C's official)" if summary.get("baseline") == "alexnet" else "baseline"
        rows += [(f"normalised mCE vs {against} (%)", summary["normalized_mce"]),
                 (f"relative mCE vs {against} (%)", summary.get("relative_mce"))]
    if "seen_mean" in summary:
        rows += [(f"seen corruptions mean ({', '.join(summary['seen']) or 'none present'})",
                  summary["seen_mean"]), ("unseen corruptions mean", summary["unseen_mean"])]
    complete = "yes" if summary.get("complete") else "no"
    missing = [c for c in summary.get("missing", []) if c in get_corruption_names("common")]
    if missing:
        complete += f" (missing: {', '.join(missing)})"
    lines = ["| metric | error (%) |", "|---|---:|"] + [f"| {k} | {_fmt(v)} |" for k, v in rows]
    return "\n".join(lines + [f"| complete 15 x 5 benchmark | {complete} |"])


# RobustBench's CORRUPTIONS (robustbench/data.py): the column order benchmark() writes a new
# unaggregated_results.csv in (its CIFAR-10 file keeps it).
ROBUSTBENCH_CORRUPTIONS = ("shot_noise", "motion_blur", "snow", "pixelate", "gaussian_noise",
                           "defocus_blur", "brightness", "fog", "zoom_blur", "frost", "glass_blur",
                           "impulse_noise", "contrast", "jpeg_compression", "elastic_transform")


def unaggregated_table(errors: pd.DataFrame, name: str) -> pd.DataFrame:
    """The error table in the layout of RobustBench's ``unaggregated_results.csv``.

    RobustBench's corruption benchmark writes one row per model (the index: the model name) and one
    column per (corruption, severity), a two-level header (corruption names, then severities 1-5),
    holding top-1 accuracy as a fraction in [0, 1] (what its ``clean_accuracy`` returns), over its
    15 benchmark corruptions; the clean accuracy is not in the file. The same layout here lets a row
    be appended to RobustBench's file (``pd.read_csv(path, header=[0, 1], index_col=0)``, then
    ``pd.concat``). Only the benchmark cells present are written (a partial set has fewer columns,
    never invented ones); the 4 extra corruptions are left out, as in RobustBench's files, and
    stay in errors.csv / accuracy.csv.
    """
    values = metrics.cells(errors)
    keys = [(c, s) for c in ROBUSTBENCH_CORRUPTIONS for s in sorted(t for d, t in values if d == c)]
    columns = pd.MultiIndex.from_tuples(keys) if keys else pd.MultiIndex.from_tuples([], names=[None, None])
    row = [round(1.0 - values[k] / 100.0, 8) for k in keys]
    return pd.DataFrame([row], index=[name], columns=columns)


def _wide(errors: pd.DataFrame, summary: dict[str, Any], seen: Sequence[str] | None) -> pd.DataFrame:
    rows = errors[errors["corruption"] != metrics.CLEAN]
    table = rows.pivot(index="corruption", columns="severity", values="error")
    table = table.reindex(canonical_order(table.index))
    table.columns = [f"s{int(s)}" for s in table.columns]
    table["mean"] = table.mean(axis=1)
    table.insert(0, "family", [metrics.family(c) or "" for c in table.index])
    if seen is not None:
        table["seen"] = [c in set(seen) for c in table.index]
    if "ce" in summary:
        table["ce"] = [summary["ce"].get(c, math.nan) for c in table.index]
    return table.reset_index()


def _bn_adapted_section(summary: dict[str, Any]) -> list[str]:
    """The standard and BN-adapted headline numbers side by side, saying which statistics each used."""
    adapted = summary.get("bn_adapted")
    if not adapted:
        return []
    keys = [("clean error", "clean_error"), ("mCE (15 benchmark corruptions)", "mce"),
            ("mean of all corruptions", "mean_all"), ("unseen corruptions mean", "unseen_mean")]
    rows = [f"| {label} | {_fmt(summary.get(key))} | {_fmt(adapted.get(key))} |" for label, key in keys
            if key in summary or key in adapted]
    return ["## Test-time BN adaptation", "", "Standard column: the BatchNorm running statistics of "
            f"training. BN-adapted column: {adapted['statistics']}.", "",
            "| metric | error (%), running statistics | error (%), BN-adapted |", "|---|---:|---:|",
            *rows, ""]


def _markdown(title: str, summary: dict[str, Any], wide: pd.DataFrame) -> str:
    head = [c for c in wide.columns]
    lines = [f"# {title}", "", summary_table(summary), "", *_bn_adapted_section(summary),
             "## Error (%) per corruption and severity", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" if c in ("corruption", "family") else "---:"
                                                          for c in head) + "|"]
    for row in wide.itertuples(index=False):
        cells = [("yes" if v else "") if isinstance(v, bool) else _fmt(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot(errors: pd.DataFrame, summary: dict[str, Any], baseline: pd.DataFrame | None, title: str,
          seen: Sequence[str] | None) -> bytes | None:
    """report.png (:mod:`auxtrain.report_plot`), or None with a warning when matplotlib is missing."""
    try:
        import matplotlib.backends.backend_agg  # noqa: F401 (a dependency; checked, not assumed)
    except ImportError:
        warnings.warn("matplotlib is not installed: report.png is skipped (pip install matplotlib)",
                      stacklevel=3)
        return None
    from auxtrain import report_plot

    return report_plot.render(errors, summary, title=title, seen=seen, baseline=baseline)


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def build_summary(errors: pd.DataFrame, *, baseline: pd.DataFrame | str | os.PathLike | None = None,
                  seen: Sequence[str] | None = None, title: str = "Corruption robustness",
                  bn_adapted: pd.DataFrame | None = None) -> dict[str, Any]:
    """The report's summary (what ``summary.json`` holds): ``title``, the numbers of
    :func:`auxtrain.metrics.mce` and ``missing_requested`` (requested names absent from the -C set).

    With ``bn_adapted`` (the error table under test-time BN adaptation): ``bn_statistics`` (what
    the standard numbers used), ``bn_adapted`` (its numbers and ``statistics``), ``mce_bn_adapted``
    and ``clean_error_bn_adapted``; the standard numbers are unchanged."""
    base = read_errors(baseline) if baseline is not None else None
    summary = {"title": title, **metrics.mce(errors, baseline=base, seen=seen),
               "missing_requested": list(errors.attrs.get("missing", []))}
    if base is not None and base.attrs.get("baseline"):
        summary["baseline"] = base.attrs["baseline"]
    if bn_adapted is not None:
        adapted = {"statistics": bn_adapted.attrs.get("bn_statistics", "adapted"),
                   **metrics.mce(bn_adapted, seen=seen)}
        summary.update(bn_statistics=errors.attrs.get("bn_statistics", "running"), bn_adapted=adapted,
                       mce_bn_adapted=adapted.get("mce"), clean_error_bn_adapted=adapted.get("clean_error"))
    return summary


def write_report(errors: pd.DataFrame, out_dir: str | os.PathLike, *,
                 baseline: pd.DataFrame | str | os.PathLike | None = None, seen: Sequence[str] | None = None,
                 title: str = "Corruption robustness",
                 bn_adapted: pd.DataFrame | None = None) -> dict[str, Any]:
    """Write the report files (see the module docstring) into ``out_dir`` and return the summary.

    ``baseline`` is another model's error table, report directory or errors.csv; ``seen`` the
    corruption names the model was trained on.
    """
    base = read_errors(baseline) if baseline is not None else None
    summary = build_summary(errors, baseline=base, seen=seen, title=title, bn_adapted=bn_adapted)
    wide = _wide(errors, summary, seen)
    long = errors[[c for c in ("corruption", "severity", "error", "n") if c in errors.columns]]
    acc = long.rename(columns={"error": "accuracy"}).assign(accuracy=100.0 - long["error"])
    files = {
        "errors.csv": long.to_csv(index=False, float_format="%.4f").encode(),
        "accuracy.csv": acc.to_csv(index=False, float_format="%.4f").encode(),
        "unaggregated_results.csv": unaggregated_table(errors, title).to_csv().encode(),
        "report.csv": wide.to_csv(index=False, float_format="%.4f").encode(),
        "summary.json": (json.dumps(_json_ready(summary), indent=2) + "\n").encode(),
        "report.md": _markdown(title, summary, wide).encode(),
    }
    png = _plot(errors, summary, base, title, seen)
    if bn_adapted is not None:
        files["errors_bn_adapted.csv"] = bn_adapted[list(long.columns)].to_csv(index=False,
                                                                              float_format="%.4f").encode()
    if png is not None:
        files["report.png"] = png
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        atomic_write_bytes(out / name, data)
    if png is None:  # a previous report's plot would pass for this report's
        (out / "report.png").unlink(missing_ok=True)
    return summary
