"""auxtrain.metrics: every summary number against a hand computation on small error tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from error_tables import BASE, MODEL, error_table  # tests/: shared small tables

from auxtrain import evaluation, metrics

_table = error_table


def test_mce_matches_a_hand_computation():
    out = evaluation.mce(MODEL, baseline=BASE, seen=["fog"])
    assert math.isnan(out["mce"]) and math.isnan(out["corruptions_acc"])  # not the full 15 x 5 set
    assert out["mce_partial"] == pytest.approx((20 + 30 + 40 + 50) / 4)  # benchmark corruptions only
    assert out["mce_partial_cells"] == 4 and out["clean_acc"] == pytest.approx(90)
    assert out["mean_extra"] == pytest.approx(60)
    assert out["mean_all"] == pytest.approx((20 + 30 + 40 + 50 + 60) / 5)
    assert out["families"] == pytest.approx({"noise": 25, "weather": 45, "extra": 60})
    assert out["severity_means"] == pytest.approx({1: 40, 2: 40})
    assert out["clean_error"] == 10 and out["complete"] is False
    assert "shot_noise" in out["missing"] and "fog" not in out["missing"]
    # normalised CE: sum_s E / sum_s E_base
    assert out["ce"] == pytest.approx({"gaussian_noise": 100 * 50 / 80, "fog": 100 * 90 / 120,
                                       "saturate": 100 * 60 / 80})
    assert out["normalized_mce"] == pytest.approx((62.5 + 75) / 2)       # over benchmark corruptions
    # relative CE: sum_s (E - E_clean) / sum_s (E_base - E_base_clean)
    assert out["relative_ce"]["gaussian_noise"] == pytest.approx(100 * (10 + 20) / (20 + 20))
    assert out["relative_ce"]["fog"] == pytest.approx(100 * (30 + 40) / (30 + 50))
    assert out["relative_mce"] == pytest.approx((75 + 87.5) / 2)
    assert out["seen"] == ["fog"] and out["seen_mean"] == pytest.approx(45)
    assert out["unseen_mean"] == pytest.approx((20 + 30 + 60) / 3)


def test_mce_partial_baseline_uses_common_cells_and_nan_without_clean():
    out = evaluation.mce(MODEL[MODEL.corruption != "clean"], baseline=BASE[~((BASE.corruption == "fog") &
                                                                             (BASE.severity == 2))])
    assert out["ce"]["fog"] == pytest.approx(100 * 40 / 50)             # only severity 1 in both
    assert math.isnan(out["clean_error"]) and math.isnan(out["relative_mce"])
    assert "seen_mean" not in out


def test_mce_complete_benchmark():
    from corruptions import get_corruption_names

    names = get_corruption_names("common")
    table = _table([(c, s, 10 * i + s) for i, c in enumerate(names) for s in range(1, 6)])
    out = evaluation.mce(table)
    assert out["complete"] is True and out["missing"] == get_corruption_names("extra")
    assert out["mce"] == pytest.approx(np.mean([10 * i + s for i in range(15) for s in range(1, 6)]))
    assert out["mce_partial"] == pytest.approx(out["mce"]) and out["mce_partial_cells"] == 75
    assert out["corruptions_acc"] == pytest.approx(100 - out["mce"])    # mean accuracy over the 75 cells
    assert math.isnan(out["mean_extra"]) and math.isnan(out["clean_acc"])  # no clean row
    one_short = evaluation.mce(table.iloc[:-1])
    assert one_short["complete"] is False and math.isnan(one_short["mce"])
    assert one_short["mce_partial_cells"] == 74
    # extra cells and a sixth severity change the partial mean, never the benchmark mCE
    more = pd.concat([table, _table([("saturate", 1, 99.0), ("fog", 6, 99.0)])])
    assert evaluation.mce(more)["mce"] == pytest.approx(out["mce"])
    with pytest.raises(ValueError, match="duplicate"):
        evaluation.mce(pd.concat([table, table.iloc[:1]]))


def test_evaluation_mce_is_the_metrics_function():
    assert evaluation.mce is metrics.mce


def test_cells_and_clean_error_split_the_table():
    assert metrics.cells(MODEL) == {("gaussian_noise", 1): 20, ("gaussian_noise", 2): 30, ("fog", 1): 40,
                                    ("fog", 2): 50, ("saturate", 1): 60}
    assert metrics.clean_error(MODEL) == 10
    assert math.isnan(metrics.clean_error(MODEL.iloc[1:]))


def test_each_mean_by_hand():
    cells = metrics.cells(MODEL)
    assert metrics.benchmark_mean(cells) == pytest.approx(35) and metrics.benchmark_cells(cells) == 4
    assert math.isnan(metrics.complete_mce(cells))
    fields = metrics.robustbench_fields(cells, 10.0)
    assert fields["clean_acc"] == pytest.approx(90) and math.isnan(fields["corruptions_acc"])
    assert metrics.extra_mean(cells) == pytest.approx(60)
    assert metrics.mean_all(cells) == pytest.approx(40)
    assert list(metrics.family_means(cells)) == ["noise", "weather", "extra"]  # benchmark order
    assert metrics.severity_means({("fog", 1): 10, ("fog", 3): 30, ("snow", 3): 50}) == {1: 10, 3: 40}
    assert math.isnan(metrics.benchmark_mean({}))                            # a mean of nothing is NaN


def test_custom_corruptions_count_in_the_overall_mean_only():
    cells = {("fog", 1): 40.0, ("my_blur", 1): 80.0}
    assert metrics.family("my_blur") is None and metrics.family("fog") == "weather"
    assert metrics.family_means(cells) == {"weather": 40}
    assert metrics.mean_all(cells) == pytest.approx(60)
    assert metrics.benchmark_mean(cells) == 40


def test_normalized_and_relative_ce_by_hand():
    ours, base = {("fog", 1): 30.0, ("fog", 2): 50.0}, {("fog", 1): 40.0, ("fog", 2): 60.0, ("snow", 1): 9.0}
    assert metrics.normalized_ce(ours, base) == pytest.approx({"fog": 100 * 80 / 100})
    assert metrics.relative_ce(ours, 10.0, base, 20.0) == pytest.approx({"fog": 100 * (20 + 40) / (20 + 40)})
    assert metrics.relative_ce(ours, math.nan, base, 20.0) == {}
    assert math.isnan(metrics.normalized_ce(ours, {("fog", 1): 0.0})["fog"])  # baseline never wrong


def test_completeness_and_missing():
    from corruptions import get_corruption_names

    full = {(c, s): 1.0 for c in get_corruption_names("common") for s in range(1, 6)}
    assert metrics.is_complete(full) and metrics.missing(full) == get_corruption_names("extra")
    del full["fog", 3]
    assert not metrics.is_complete(full)


def test_seen_means_by_hand():
    cells = metrics.cells(MODEL)
    assert metrics.seen_means(cells, ["saturate", "gaussian_noise", "snow"]) == {
        "seen": ["gaussian_noise", "saturate"], "seen_mean": pytest.approx(110 / 3),
        "unseen_mean": pytest.approx(45)}


def test_check_errors_rejects_other_objects():
    with pytest.raises(ValueError, match="columns corruption, severity, error"):
        metrics.check_errors(pd.DataFrame({"name": ["fog"]}))
    with pytest.raises(ValueError, match="baseline must be"):
        metrics.mce(MODEL, baseline=[1, 2])


def _full_table(clean: float = 20.0) -> pd.DataFrame:
    """All 15 benchmark corruptions at severities 1-5: E(c, s) = 30 + 2 * index(c) + s."""
    rows = [("clean", 0, clean)]
    for i, c in enumerate(metrics.get_corruption_names("common")):
        rows += [(c, s, 30.0 + 2 * i + s) for s in range(1, 6)]
    return error_table(rows)


def test_alexnet_baseline_matches_a_hand_computation():
    from auxtrain.baselines import load_baseline

    alexnet = load_baseline("alexnet")
    out = metrics.mce(_full_table(), baseline=alexnet)
    # Published (fractions): gaussian_noise 0.886428, brightness 0.564592, clean 0.4345.
    assert out["ce"]["gaussian_noise"] == pytest.approx(100 * 33.0 / 88.6428)     # mean_s (30 + s) = 33
    assert out["ce"]["brightness"] == pytest.approx(100 * (33.0 + 20) / 56.4592)  # index 10
    assert out["relative_ce"]["brightness"] == pytest.approx(100 * (53.0 - 20) / (56.4592 - 43.45))
    published = [0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360, 0.866816, 0.826572,
                 0.819324, 0.564592, 0.853204, 0.646056, 0.717840, 0.606500]
    by_hand = sum(100 * (33.0 + 2 * i) / (100 * e) for i, e in enumerate(published)) / 15
    assert out["normalized_mce"] == pytest.approx(by_hand)
    rel = sum(100 * (33.0 + 2 * i - 20) / (100 * e - 43.45) for i, e in enumerate(published)) / 15
    assert out["relative_mce"] == pytest.approx(rel)


def test_alexnet_baseline_needs_all_five_severities_of_a_corruption():
    from auxtrain.baselines import load_baseline

    table = _full_table()
    partial = table[~((table.corruption == "fog") & (table.severity == 5))]
    out = metrics.mce(partial, baseline=load_baseline("alexnet"))
    assert "fog" not in out["ce"] and "fog" not in out["relative_ce"]   # AlexNet's: a 5-severity mean
    assert len(out["ce"]) == 14


def test_alexnet_equals_a_per_severity_baseline_of_the_same_means():
    """A per-corruption baseline gives the number a per-severity table with those means gives."""
    from auxtrain.baselines import load_baseline

    alexnet = load_baseline("alexnet")
    per_severity = error_table([("clean", 0, float(alexnet.error[0]))]
                               + [(c, s, e) for c, e in zip(alexnet.corruption[1:], alexnet.error[1:],
                                                            strict=True) for s in range(1, 6)])
    a, b = metrics.mce(_full_table(), baseline=alexnet), metrics.mce(_full_table(), baseline=per_severity)
    assert a["normalized_mce"] == pytest.approx(b["normalized_mce"])
    assert a["relative_mce"] == pytest.approx(b["relative_mce"])
