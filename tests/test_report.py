"""auxtrain.report: the files write_report writes, their contents, and the case without matplotlib."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from auxtrain import evaluation, report


def _table(rows):
    return pd.DataFrame(rows, columns=["corruption", "severity", "error"])


MODEL = _table([("clean", 0, 10), ("gaussian_noise", 1, 20), ("gaussian_noise", 2, 30), ("fog", 1, 40),
                ("fog", 2, 50), ("saturate", 1, 60)])
BASE = _table([("clean", 0, 20), ("gaussian_noise", 1, 40), ("gaussian_noise", 2, 40), ("fog", 1, 50),
               ("fog", 2, 70), ("saturate", 1, 80)])


def test_write_report_files_and_baseline_from_disk(tmp_path):
    base_dir = tmp_path / "base"
    evaluation.write_report(BASE, base_dir)
    summary = evaluation.write_report(MODEL, tmp_path / "rep", baseline=base_dir, seen=["fog"], title="T")
    for name in ("errors.csv", "accuracy.csv", "report.csv", "summary.json", "report.md", "report.png"):
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
    assert report.write_report(MODEL, tmp_path, baseline=BASE, seen=["fog"], title="T") == built
    assert built["title"] == "T" and built["mce"] == pytest.approx(35)


def test_read_errors_names_the_problem(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        report.read_errors(tmp_path / "nowhere")
    (tmp_path / "errors.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        report.read_errors(tmp_path)


def test_report_does_not_import_the_evaluation_runner():
    """report -> metrics only: no import cycle between report and evaluation."""
    code = "import sys, auxtrain.report; assert 'auxtrain.evaluation' not in sys.modules, 'cycle'"
    subprocess.run([sys.executable, "-c", code], check=True)
