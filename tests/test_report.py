"""auxtrain.report: the files write_report writes, their contents, and the case without matplotlib."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from error_tables import BASE, MODEL, error_table  # tests/: shared small tables

from auxtrain import evaluation, report

_table = error_table


def test_write_report_files_and_baseline_from_disk(tmp_path):
    base_dir = tmp_path / "base"
    evaluation.write_report(BASE, base_dir)
    summary = evaluation.write_report(MODEL, tmp_path / "rep", baseline=base_dir, seen=["fog"], title="T")
    for name in ("errors.csv", "accuracy.csv", "unaggregated_results.csv", "report.csv", "summary.json",
                 "report.md", "report.png"):
        assert (tmp_path / "rep" / name).is_file(), name
    on_disk = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert on_disk["normalized_mce"] == pytest.approx(summary["normalized_mce"]) == pytest.approx(68.75)
    assert on_disk["mean_extra"] == 60 and on_disk["title"] == "T"
    acc = pd.read_csv(tmp_path / "rep" / "accuracy.csv")
    assert acc["accuracy"].tolist() == pytest.approx((100 - MODEL["error"]).tolist())
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| fog | weather | 40.00 | 50.00 |" in md and "68.75" in md
    assert not list((tmp_path / "rep").glob("*.tmp"))


def test_write_report_without_matplotlib_skips_the_png(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.warns(UserWarning, match="matplotlib"):
        evaluation.write_report(MODEL, tmp_path)
    assert (tmp_path / "report.md").is_file() and not (tmp_path / "report.png").exists()


def test_write_report_without_matplotlib_removes_a_stale_png(tmp_path, monkeypatch):
    (tmp_path / "report.png").write_bytes(b"the previous report's plot")
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.warns(UserWarning, match="matplotlib"):
        evaluation.write_report(MODEL, tmp_path)
    assert (tmp_path / "report.md").is_file() and not (tmp_path / "report.png").exists()


def test_wide_table_and_summary_json(tmp_path):
    summary = report.write_report(MODEL, tmp_path, seen=["fog"])
    wide = pd.read_csv(tmp_path / "report.csv")
    assert wide["corruption"].tolist() == ["gaussian_noise", "fog", "saturate"]   # benchmark order
    assert wide["family"].tolist() == ["noise", "weather", "extra"]
    assert wide["mean"].tolist() == pytest.approx([25, 45, 60])
    assert wide["seen"].tolist() == [False, True, False]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(report._json_ready(summary)))
    assert on_disk["missing_requested"] == [] and on_disk["seen"] == ["fog"]
    report.write_report(MODEL.iloc[1:], tmp_path / "no_clean")
    assert json.loads((tmp_path / "no_clean" / "summary.json").read_text())["clean_error"] is None  # NaN


def test_build_summary_is_what_write_report_writes(tmp_path):
    built = report.build_summary(MODEL, baseline=BASE, seen=["fog"], title="T")
    written = report.write_report(MODEL, tmp_path, baseline=BASE, seen=["fog"], title="T")
    assert report._json_ready(written) == report._json_ready(built)      # NaN (incomplete mCE) != NaN
    assert built["title"] == "T" and built["mce_partial"] == pytest.approx(35)


def test_read_errors_names_the_problem(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        report.read_errors(tmp_path / "nowhere")
    (tmp_path / "errors.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        report.read_errors(tmp_path)


def test_report_does_not_import_the_evaluation_runner():
    """report -> metrics only: no import cycle between report and evaluation; matplotlib only when drawing."""
    code = ("import sys, auxtrain.report, auxtrain.report_plot; "
            "assert 'auxtrain.evaluation' not in sys.modules, 'cycle'; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported at import time'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_summary_table_has_one_row_per_number():
    """The extra family's mean and mean_extra are the same number: report.md shows it once."""
    table = report.summary_table(report.build_summary(MODEL))
    labels = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert len(labels) == len(set(labels))
    assert "extra mean" not in labels
    assert sum("60.00" in line for line in table.splitlines()) == 1       # saturate, the only extra cell
    assert [label for label in labels if label.endswith(" mean")] == ["noise mean", "weather mean"]


def test_incomplete_set_has_null_mce_and_a_labelled_partial_mean(tmp_path):
    report.write_report(MODEL, tmp_path)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["mce"] is None and on_disk["corruptions_acc"] is None
    assert on_disk["mce_partial"] == pytest.approx(35) and on_disk["mce_partial_cells"] == 4
    assert on_disk["clean_acc"] == pytest.approx(90)
    md = (tmp_path / "report.md").read_text()
    assert "| mCE (15 benchmark corruptions, unnormalised) | n/a: needs all 75 benchmark cells (15 x 5), " \
           "4 present |" in md
    assert "| partial mCE: mean over the 4 benchmark cells present (not comparable) | 35.00 |" in md


def test_complete_set_shows_the_mce_and_no_partial_row(tmp_path):
    from corruptions import get_corruption_names

    full = _table([("clean", 0, 5.0)] + [(c, s, 10.0 + s) for c in get_corruption_names("common")
                                          for s in range(1, 6)])
    summary = report.write_report(full, tmp_path)
    assert summary["mce"] == pytest.approx(13) and summary["corruptions_acc"] == pytest.approx(87)
    md = (tmp_path / "report.md").read_text()
    assert "| mCE (15 benchmark corruptions, unnormalised) | 13.00 |" in md and "partial mCE" not in md
    # a summary read back from summary.json (None, not NaN) renders the same way
    assert report.summary_table(json.loads((tmp_path / "summary.json").read_text())) == \
        report.summary_table(summary)


def test_unaggregated_results_csv_has_robustbench_layout_and_agrees_with_errors_csv(tmp_path):
    from corruptions import get_corruption_names

    rng = np.random.default_rng(0)
    rows = [("clean", 0, 7.5)] + [(c, s, round(float(rng.uniform(5, 95)), 2))
                                  for c in get_corruption_names("all") for s in range(1, 6)]
    report.write_report(_table(rows), tmp_path, title="my model")
    lines = (tmp_path / "unaggregated_results.csv").read_text().splitlines()
    assert lines[0].startswith(",shot_noise,shot_noise,shot_noise,shot_noise,shot_noise,motion_blur,")
    assert lines[1] == "," + ",".join(["1,2,3,4,5"] * 15) and lines[2].startswith("my model,")
    assert len(lines) == 3                                        # one row: this model
    table = pd.read_csv(tmp_path / "unaggregated_results.csv", header=[0, 1], index_col=0)
    assert list(table.index) == ["my model"]
    assert list(dict.fromkeys(table.columns.get_level_values(0))) == list(report.ROBUSTBENCH_CORRUPTIONS)
    assert set(table.columns.get_level_values(0)) == set(get_corruption_names("common"))  # no extra, clean
    errors = pd.read_csv(tmp_path / "errors.csv")
    for (corruption, severity), acc in table.iloc[0].items():
        error = errors.loc[(errors.corruption == corruption) & (errors.severity == int(severity)), "error"]
        assert acc == pytest.approx(1 - float(error.iloc[0]) / 100, abs=1e-9)   # a fraction, not percent
    # RobustBench's corruptions_acc is the mean of this row; the summary keeps it in percent
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert 100 * table.values.mean() == pytest.approx(summary["corruptions_acc"])


def test_unaggregated_results_csv_of_a_partial_set_has_only_the_cells_present(tmp_path):
    report.write_report(MODEL, tmp_path)
    table = pd.read_csv(tmp_path / "unaggregated_results.csv", header=[0, 1], index_col=0)
    assert [(c, int(s)) for c, s in table.columns] == [("gaussian_noise", 1), ("gaussian_noise", 2),
                                                       ("fog", 1), ("fog", 2)]   # RobustBench's order
    assert table.iloc[0].tolist() == pytest.approx([0.8, 0.7, 0.6, 0.5])
    assert not list(tmp_path.glob("*.tmp"))


def test_overwrite_removes_every_report_file(tmp_path):
    """RunDir(--overwrite) deletes the previous run's report files: every file write_report writes."""
    from auxtrain.run_dir import RunDir

    report.write_report(MODEL, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} <= set(RunDir.REPORT_FILES)


def _benchmark_table(clean: float = 12.0) -> pd.DataFrame:
    """All 19 corruptions at severities 1-5 (a full -C set)."""
    from corruptions import get_corruption_names

    names = get_corruption_names("all")
    rows = [("clean", 0, clean)] + [(c, s, 20.0 + i + 5 * s) for i, c in enumerate(names)
                                    for s in range(1, 6)]
    return _table(rows)


def test_report_png_is_a_heatmap_of_the_readme_width(tmp_path):
    """A default install writes report.png: it decodes, is 800 px wide and one row per corruption high."""
    from PIL import Image

    from auxtrain import report_plot

    report.write_report(_benchmark_table(), tmp_path, seen=["fog"], title="T")
    with Image.open(tmp_path / "report.png") as png:
        png.load()
        assert png.format == "PNG"
        width, height = png.size
    assert width == 800 == report_plot.WIDTH_INCHES * report_plot.DPI
    assert height == round((1.9 + 0.27 * 19) * report_plot.DPI)
    report.write_report(MODEL, tmp_path / "three", baseline=BASE)   # 3 corruptions, with the bars
    with Image.open(tmp_path / "three" / "report.png") as png:
        assert png.size == (800, round((1.9 + 0.27 * 3) * report_plot.DPI))


def test_heatmap_rows_are_grouped_by_family_in_benchmark_order():
    from auxtrain import report_plot

    names, families, severities, grid = report_plot._rows(_benchmark_table())
    assert names[:3] == ["gaussian_noise", "shot_noise", "impulse_noise"] and names[-4:] == [
        "speckle_noise", "gaussian_blur", "spatter", "saturate"]
    assert families == [metrics_family(n) for n in names]
    assert [f for i, f in enumerate(families) if i == 0 or families[i - 1] != f] == [
        "noise", "blur", "weather", "digital", "extra"]        # each family once: grouped
    assert severities == [1, 2, 3, 4, 5] and grid.loc["fog", 3] == pytest.approx(20 + 9 + 15)


def metrics_family(name: str) -> str:
    from corruptions import family_of

    return family_of(name)


def test_heatmap_title_names_clean_error_and_mce_or_the_partial_mean():
    from auxtrain import report_plot

    full = report_plot.headline(report.build_summary(_benchmark_table()))
    assert full.startswith("clean error 12.0%  |  mCE ") and "partial" not in full
    partial = report_plot.headline(report.build_summary(MODEL))
    assert "clean error 10.0%" in partial and "partial mCE 35.0% (4 of 75 cells; not comparable)" in partial
    assert " mCE 35.0" not in partial.replace("partial mCE 35.0", "")
    with_base = report_plot.headline(report.build_summary(MODEL, baseline=BASE))
    assert "normalised mCE (corruptions present) 68.8%" in with_base


def test_baseline_alexnet_in_the_report(tmp_path):
    summary = report.write_report(_benchmark_table(), tmp_path, baseline="alexnet")
    assert summary["baseline"] == "alexnet"
    assert summary["ce"]["gaussian_noise"] == pytest.approx(100 * (20 + 15) / 88.6428)  # mean_s (20 + 5s)
    md = (tmp_path / "report.md").read_text()
    assert "normalised mCE vs AlexNet (ImageNet-C's official) (%)" in md
    assert report.read_errors("AlexNet").attrs["baseline"] == "alexnet"
    with pytest.raises(ValueError, match="does not exist"):
        report.read_errors(tmp_path / "alexnet")     # a path, not the name: read as a folder
