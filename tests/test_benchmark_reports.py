"""The result-table helpers of benchmarks/robustness/ that turn finished runs into the published numbers."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "robustness"))
import ablations_shapes  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)
import bn_statistics  # noqa: E402
import cifar10  # noqa: E402


def _runs() -> pd.DataFrame:
    return pd.DataFrame({
        "variant": ["full", "full", "full", "other", "other", "other", "single"],
        "seed": [0, 1, 2, 0, 1, 2, 0],
        "clean error": [10.0, 12.0, 14.0, 13.0, 11.0, 20.0, 30.0],
        "mCE": [20.0, 22.0, 24.0, 25.0, 23.0, 30.0, 40.0],
    })


def test_seed_summary_reports_mean_and_sample_std_per_group() -> None:
    summary = cifar10.seed_summary(_runs(), by="variant")
    assert summary.loc["full", "seeds"] == 3
    assert summary.loc["full", "clean error"] == "12.00 ± 2.00"
    assert summary.loc["single", "mCE"] == "40.00"  # one seed: no spread to report


def test_paired_with_subtracts_the_reference_on_the_same_seed() -> None:
    paired = ablations_shapes.paired_with(_runs()).set_index("variant")
    # other - full per seed: clean +3, -1, +6; mCE +5, +1, +6
    assert paired.loc["other", "clean error - full"] == "+2.67 ± 3.51"
    assert paired.loc["other", "seeds full lower (clean error)"] == "2 of 3"
    assert paired.loc["other", "seeds full lower (mCE)"] == "3 of 3"
    assert paired.loc["single", "seeds"] == 1
    assert paired.loc["single", "mCE - full"] == "+20.00"


def test_noise_blur_split_separates_the_trained_families_from_the_rest() -> None:
    names = cifar10.NOISE_BLUR + ["fog", "jpeg_compression"]
    errors = pd.DataFrame({"corruption": ["clean", *names],
                           "error": [99.0] + [10.0] * len(cifar10.NOISE_BLUR) + [30.0, 50.0]})
    split = cifar10.noise_blur_split(errors)
    assert len(cifar10.NOISE_BLUR) == 7
    assert split == {"noise+blur mean": 10.0, "other mean": 40.0}


def test_with_batch_statistics_normalises_each_batch_by_itself_and_leaves_the_model_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    model[1].running_mean.fill_(5.0)  # statistics that do not fit the test batch
    model[1].running_var.fill_(9.0)
    x = torch.randn(8, 3, 6, 6) * 2 + 1
    adapted = bn_statistics.with_batch_statistics(model).eval()
    features = model[0](x)
    expected = (features - features.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
        features.var((0, 2, 3), unbiased=False, keepdim=True) + model[1].eps)
    expected = expected * model[1].weight[:, None, None] + model[1].bias[:, None, None]
    with torch.no_grad():
        torch.testing.assert_close(adapted(x), expected)
        assert not torch.allclose(model(x), expected, atol=1e-3)
    assert model[1].running_mean.eq(5.0).all()  # the original keeps its running statistics


def test_with_recalibrated_statistics_estimates_bn_on_clean_plus_corrupted_views() -> None:
    from auxtrain.data.augment import augment_batch
    from auxtrain.data.views import make_views

    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    model = nn.Sequential(nn.BatchNorm2d(3)).eval()
    adapted = bn_statistics.with_recalibrated_statistics(model, images, "gaussian_noise", seed=3)
    generator = torch.Generator().manual_seed(3)
    cropped = augment_batch(images, generator)  # the training augmentation, then the views
    (view,) = make_views(cropped, "gaussian_noise", generator)
    mixture = torch.cat([cropped, view]).float() / 255
    torch.testing.assert_close(adapted[0].running_mean, mixture.mean((0, 2, 3)))
    torch.testing.assert_close(adapted[0].running_var, mixture.var((0, 2, 3)))  # BN keeps the unbiased one
    assert not adapted.training
    assert model[0].running_mean.eq(0).all()  # the original is untouched


def test_summary_value_reads_null_as_nan_so_tables_show_a_dash() -> None:
    """summary.json holds null for the mCE of an incomplete -C set; the seed tables must not crash on it."""
    assert cifar10.summary_value({"mce": 12.5}) == 12.5
    assert math.isnan(cifar10.summary_value({"mce": None})) and math.isnan(cifar10.summary_value({}))
    runs = pd.DataFrame({"method": ["a", "a"], "seed": [0, 1],
                         "mCE (15)": [cifar10.summary_value({"mce": None})] * 2})
    assert cifar10.seed_summary(runs).loc["a", "mCE (15)"] == "-"
    assert "| a | 2 | - |" in cifar10.markdown_table(cifar10.seed_summary(runs), index=True)


def test_run_fit_keeps_a_record_and_reports_from_it_when_the_run_folder_is_gone(tmp_path: Path) -> None:
    out, records = tmp_path / "scratch", tmp_path / "records"
    run_dir = out / "standard-seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("seed: 0\n")
    (run_dir / "summary.json").write_text('{"mce": 50.0, "mean_all": 40.0, "families": {}}')
    (run_dir / "metrics.csv").write_text("epoch,test_acc,seconds\n1,60.0,10.0\n2,70.0,12.0\n")
    (run_dir / "errors.csv").write_text("corruption,severity,error\nclean,0,30.0\nfog,1,35.0\n")
    (run_dir / "checkpoint_last.pt").write_bytes(b"large")
    args = type("Args", (), {"out": out, "threads": 1})()  # a script without --records (ablations) works too
    assert cifar10.run_fit("standard", args, None, 0, ["--dataset", "cifar10"])["clean_error"] == 30.0
    assert not records.exists()
    first = cifar10.run_fit("standard", args, None, 0, ["--dataset", "cifar10"], records)  # nothing runs
    assert sorted(p.name for p in (records / "standard-seed0").iterdir()) == sorted(cifar10.RECORD_FILES)
    for name in list(run_dir.iterdir()):
        name.unlink()
    run_dir.rmdir()  # the scratch folder of an earlier session is gone; the record stands in for it
    again = cifar10.run_fit("standard", args, None, 0, ["--dataset", "cifar10"], records)
    assert again["clean_error"] == first["clean_error"] == 30.0
    assert again["train_seconds"] == 22.0 and again["summary"]["mce"] == 50.0
