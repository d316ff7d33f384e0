"""auxtrain.evaluation (the runner), auxtrain.data.corrupted (the -C readers) and `auxtrain eval`.

The metrics are tested in test_metrics.py and the report files in test_report.py.

The fixture -C sets hold solid-colour images and the model predicts the dominant channel
(red 0, green 1, blue 2), so the exact error of every (corruption, severity) block is known.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from auxtrain import evaluation
from auxtrain.cli import main
from auxtrain.data import corrupted
from auxtrain.export import save_model

N, SIZE = 6, 8
LABELS = np.array([0, 1, 2, 0, 1, 2])
NAMES = ["gaussian_noise", "fog", "saturate"]
COLOURS = np.eye(3, dtype=np.uint8) * 200 + 20  # class k: channel k bright


class ColourModel(nn.Module):
    """Logits = mean channel intensities (identity linear layer): predicts the dominant channel."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(3, num_classes)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(3))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3)))


def _register_colour_model() -> None:
    from auxtrain.models import is_model, register_model

    if not is_model("test_colour"):
        register_model(lambda num_classes=3: ColourModel(num_classes), name="test_colour")


def _wrong(ci: int, s: int) -> int:
    """Number of wrongly coloured images in block (corruption index ci, severity s)."""
    return (ci + s) % (N + 1)


def _images(labels: np.ndarray, wrong: int) -> np.ndarray:
    shown = labels.copy()
    shown[:wrong] = (shown[:wrong] + 1) % 3
    return np.broadcast_to(COLOURS[shown][:, None, None, :], (len(labels), SIZE, SIZE, 3)).copy()


def _expected(names=NAMES, severities=range(1, 6)) -> dict[tuple[str, int], float]:
    return {(c, s): 100.0 * _wrong(NAMES.index(c), s) / N for c in names for s in severities}


def make_c_dir(root, names=NAMES, labels=LABELS):
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "labels.npy", np.tile(labels, 5).astype(np.uint8))
    for ci, name in enumerate(names):
        np.save(root / f"{name}.npy", np.concatenate([_images(labels, _wrong(ci, s)) for s in range(1, 6)]))
    return root


@pytest.fixture
def cdir(tmp_path):
    return make_c_dir(tmp_path / "C")


def _cells(errors: pd.DataFrame) -> dict[tuple[str, int], float]:
    return {(r.corruption, int(r.severity)): r.error for r in errors.itertuples() if r.corruption != "clean"}


# ---- corruption_errors -----------------------------------------------------------------------------

def test_corruption_errors_are_exact_and_ordered(cdir):
    clean_images = _images(LABELS, 2)  # 2 of 6 wrong -> 33.33 %
    errors = evaluation.corruption_errors(ColourModel(), cdir, batch_size=4, clean=(clean_images, LABELS),
                                          progress=False)
    assert list(errors.columns) == ["corruption", "severity", "error", "n"]
    assert errors.iloc[0].tolist() == ["clean", 0, pytest.approx(100 * 2 / 6), N]
    assert _cells(errors) == pytest.approx(_expected())
    assert (errors["n"] == N).all()
    # canonical benchmark order (gaussian_noise, fog, then the extra saturate), severities ascending
    assert list(dict.fromkeys(errors["corruption"])) == ["clean", "gaussian_noise", "fog", "saturate"]
    assert errors[errors.corruption == "fog"]["severity"].tolist() == [1, 2, 3, 4, 5]


def test_clean_as_tensor_and_as_clean_npy_in_root(cdir):
    chw = torch.from_numpy(_images(LABELS, 3)).permute(0, 3, 1, 2)
    e1 = evaluation.corruption_errors(ColourModel(), cdir, corruptions="fog",
                                      clean=(chw, torch.tensor(LABELS)), progress=False)
    np.save(cdir / "clean.npy", _images(LABELS, 3))  # picked up automatically, labels from labels.npy
    e2 = evaluation.corruption_errors(ColourModel(), cdir, corruptions="fog", progress=False)
    assert e1.iloc[0]["error"] == e2.iloc[0]["error"] == pytest.approx(50.0)
    assert e1.equals(e2)


def test_partial_sets_subsets_and_severity_strings(cdir):
    errors = evaluation.corruption_errors(ColourModel(), cdir, corruptions=["fog", "snow", "gaussian_noise"],
                                          severities="2-3", progress=False)
    assert errors.attrs["missing"] == ["snow"]
    assert _cells(errors) == pytest.approx(_expected(["gaussian_noise", "fog"], [2, 3]))
    noise = evaluation.corruption_errors(ColourModel(), cdir, corruptions="noise", severities=[5],
                                         progress=False)
    assert set(noise["corruption"]) == {"gaussian_noise"}  # the family, restricted to the files present
    with pytest.raises(ValueError, match="none of the requested corruptions"):
        evaluation.corruption_errors(ColourModel(), cdir, corruptions="blur", progress=False)


def test_streams_from_memory_maps_one_batch_at_a_time(cdir, monkeypatch):
    """Every np.load is a read-only memory map, and only batch-sized slices of the files are read."""
    real_load, calls, slices = np.load, [], []

    class Spy:  # stands in for the memmap: records every row range read
        def __init__(self, array):
            self.array, self.shape, self.dtype, self.ndim = array, array.shape, array.dtype, array.ndim

        def __getitem__(self, key):
            assert isinstance(key, slice)
            slices.append(len(range(*key.indices(self.shape[0]))))
            return self.array[key]

    def spy_load(path, *args, **kwargs):
        calls.append(kwargs.get("mmap_mode"))
        array = real_load(path, *args, **kwargs)
        assert isinstance(array, np.memmap)
        return array if str(path).endswith("labels.npy") else Spy(array)

    monkeypatch.setattr(corrupted.np, "load", spy_load)
    errors = evaluation.corruption_errors(ColourModel(), cdir, batch_size=4, progress=False)
    assert calls and set(calls) == {"r"}
    assert slices and max(slices) <= 4 and sum(slices) == len(NAMES) * 5 * N  # each row read exactly once
    assert _cells(errors) == pytest.approx(_expected())


@pytest.mark.parametrize("damage, message", [
    ("truncated", r"fog\.npy is truncated"),
    ("shape", r"fog\.npy has uint8 \(30, 8, 8\)"),
    ("rows", r"fog\.npy has uint8 \(25, 8, 8, 3\), expected uint8 \(30, H, W, 3\)"),
    ("labels_length", r"labels\.npy has 29 labels, not a multiple"),
    ("labels_differ", r"labels\.npy: the labels of severity block 3 differ"),
    ("no_labels", r"labels\.npy is missing"),
    ("empty", r"holds no corruption data"),
])
def test_bad_c_sets_raise_errors_naming_the_file(cdir, damage, message):
    fog = cdir / "fog.npy"
    if damage == "truncated":
        fog.write_bytes(fog.read_bytes()[:-100])
    elif damage == "shape":
        np.save(fog, np.zeros((5 * N, SIZE, SIZE), np.uint8))
    elif damage == "rows":
        np.save(fog, np.zeros((5 * N - 5, SIZE, SIZE, 3), np.uint8))
    elif damage == "labels_length":
        np.save(cdir / "labels.npy", np.zeros(5 * N - 1, np.uint8))
    elif damage == "labels_differ":
        labels = np.tile(LABELS, 5)
        labels[2 * N] = (labels[2 * N] + 1) % 3
        np.save(cdir / "labels.npy", labels)
    elif damage == "no_labels":
        (cdir / "labels.npy").unlink()
    elif damage == "empty":
        for p in cdir.iterdir():
            p.unlink()
    with pytest.raises(ValueError, match=message):
        evaluation.corruption_errors(ColourModel(), cdir, progress=False)


def test_accuracy_of_numpy_and_tensor_images():
    images = _images(LABELS, 2)  # 2 of 6 wrong
    assert evaluation.accuracy(ColourModel(), images, LABELS, batch_size=4) == pytest.approx(100 * 4 / 6)
    chw = torch.from_numpy(images).permute(0, 3, 1, 2)
    assert evaluation.accuracy(ColourModel(), chw, torch.tensor(LABELS)) == pytest.approx(100 * 4 / 6)
    with pytest.raises(ValueError, match="labels have shape"):
        evaluation.accuracy(ColourModel(), images, LABELS[:5])


def test_only_one_block_is_mapped_at_a_time(cdir, monkeypatch):
    """Reading moves block by block and unmaps each before the next: memory stays flat."""
    live, most = set(), []
    real_map, real_release = corrupted.NpyBlock._map, corrupted.NpyBlock.release

    def mapping(self):
        live.add(id(self))
        most.append(len(live))
        return real_map(self)

    def release(self):
        live.discard(id(self))
        real_release(self)

    monkeypatch.setattr(corrupted.NpyBlock, "_map", mapping)
    monkeypatch.setattr(corrupted.NpyBlock, "release", release)
    np.save(cdir / "clean.npy", _images(LABELS, 1))
    evaluation.corruption_errors(ColourModel(), cdir, batch_size=4, progress=False)
    assert most and max(most) == 1 and not live


def test_clean_labels_must_match_the_c_set(cdir):
    with pytest.raises(ValueError, match="clean labels differ"):
        evaluation.corruption_errors(ColourModel(), cdir, clean=(_images(LABELS, 0), LABELS[::-1].copy()),
                                     progress=False)


def make_folder_c(root, clean):
    """An ImageNet-C style tree (2 corruptions x 2 severities) and a clean folder; the expected errors."""
    from PIL import Image

    classes, expected = ["n01", "n02", "n03"], {}
    for ci, name in enumerate(["gaussian_noise", "fog"]):
        for s in (1, 2):
            images = _images(LABELS, _wrong(ci, s))
            for i, (img, label) in enumerate(zip(images, LABELS, strict=True)):
                folder = root / name / str(s) / classes[label]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(folder / f"{i}.png")
            expected[name, s] = 100.0 * _wrong(ci, s) / N
    for i, (img, label) in enumerate(zip(_images(LABELS, 1), LABELS, strict=True)):
        (clean / classes[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(clean / classes[label] / f"{i}.png")
    return expected


def test_imagenet_c_style_folders(tmp_path):
    root, clean = tmp_path / "IN-C", tmp_path / "val"
    expected = make_folder_c(root, clean)
    errors = evaluation.corruption_errors(ColourModel(), root, batch_size=4, clean=clean, progress=False)
    assert _cells(errors) == pytest.approx(expected)
    assert errors.iloc[0]["error"] == pytest.approx(100 / 6)


# ---- the readers as Datasets ------------------------------------------------------------------------

def test_npy_reader_exposes_each_block_as_a_dataset(cdir):
    import pickle

    from torch.utils.data import DataLoader, Dataset

    data = corrupted.open_corrupted(cdir)
    block = data.subset("fog", 3)
    assert isinstance(block, Dataset) and len(block) == N
    image, label = block[1]
    assert image.dtype == torch.uint8 and image.shape == (3, SIZE, SIZE) and label == LABELS[1]
    expected = torch.from_numpy(_images(LABELS, _wrong(NAMES.index("fog"), 3))).permute(0, 3, 1, 2)
    images, labels = next(iter(DataLoader(block, batch_size=N)))
    assert torch.equal(images, expected) and labels.tolist() == LABELS.tolist()
    assert torch.equal(torch.stack([block[i][0] for i in (4, 0)]), expected[[4, 0]])  # any order
    assert len(pickle.dumps(block)) < 2000  # the memory map is not pickled to DataLoader workers


def test_folder_reader_exposes_each_block_as_a_dataset_and_decodes_in_workers(tmp_path):
    root, clean = tmp_path / "IN-C", tmp_path / "val"
    expected = make_folder_c(root, clean)
    data = corrupted.open_corrupted(root)
    image, label = data.subset("fog", 2)[0]
    assert image.dtype == torch.uint8 and image.shape == (3, SIZE, SIZE) and label == LABELS[0]
    assert len(data.subset("fog", 5)) == 0  # an absent severity folder is an empty set
    errors = evaluation.corruption_errors(ColourModel(), root, batch_size=4, clean=clean, workers=1,
                                          progress=False)
    assert _cells(errors) == pytest.approx(expected) and errors.iloc[0]["error"] == pytest.approx(100 / 6)


def test_corruption_typos_are_errors_naming_the_flag_and_custom_files_are_accepted(cdir):
    with pytest.raises(ValueError, match="--corruptions='fogg' is neither a corruption nor a subset"):
        evaluation.corruption_errors(ColourModel(), cdir, corruptions="fog,fogg", progress=False)
    with pytest.raises(ValueError, match="--eval-corruptions='fogg'"):
        evaluation.corruption_errors(ColourModel(), cdir, corruptions="fogg", progress=False,
                                     flags={"corruptions": "--eval-corruptions"})
    with pytest.raises(ValueError, match="--severities='0-2'"):
        evaluation.corruption_errors(ColourModel(), cdir, severities="0-2", progress=False)
    (cdir / "my_corruption.npy").write_bytes((cdir / "fog.npy").read_bytes())  # a custom -C file
    errors = evaluation.corruption_errors(ColourModel(), cdir, corruptions="my_corruption,fog",
                                          progress=False)
    assert list(dict.fromkeys(errors["corruption"])) == ["fog", "my_corruption"]
    assert _cells(errors)["my_corruption", 2] == _cells(errors)["fog", 2]


# ---- the runner -------------------------------------------------------------------------------------

def test_evaluate_returns_the_table_the_summary_and_writes_the_report(cdir, tmp_path):
    np.save(cdir / "clean.npy", _images(LABELS, 1))
    out = tmp_path / "rep"
    result = evaluation.evaluate(ColourModel(), cdir, corruptions="fog,gaussian_noise", severities="1-3",
                                 batch_size=4, progress=False, seen=["fog"], title="T", out_dir=out)
    assert isinstance(result, evaluation.EvalResult) and result.out_dir == out and result.root == cdir
    assert _cells(result.errors) == pytest.approx(_expected(["gaussian_noise", "fog"], [1, 2, 3]))
    assert result.errors.iloc[0]["corruption"] == "clean"
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["title"] == "T" and on_disk["seen"] == ["fog"]
    assert on_disk["mce"] is None and math.isnan(result.summary["mce"])   # 2 of the 15 corruptions
    assert on_disk["mce_partial"] == pytest.approx(result.summary["mce_partial"])
    assert result.summary["mce_partial"] == pytest.approx(np.mean(list(_expected(["gaussian_noise", "fog"],
                                                                                 [1, 2, 3]).values())))
    for name in ("errors.csv", "accuracy.csv", "report.csv", "report.md"):
        assert (out / name).is_file()
    alone = evaluation.evaluate(ColourModel(), cdir, corruptions="fog", progress=False)  # no out_dir
    assert alone.out_dir is None and alone.summary["families"] == pytest.approx(
        {"weather": np.mean([_expected()["fog", s] for s in range(1, 6)])})


def test_evaluate_generates_caches_and_evaluates_a_c_set(tmp_path):
    images = torch.from_numpy(np.concatenate([_images(LABELS, 0)] * 2)).permute(0, 3, 1, 2)
    labels = np.concatenate([LABELS, LABELS])
    out = tmp_path / "rep"
    kw = dict(generate_from=(images, labels), corruptions="contrast", severities="1,5", seed=0,
              progress=False, out_dir=out)
    result = evaluation.evaluate(ColourModel(), **kw)
    assert result.root == out / "corrupted_test"
    assert result.errors["corruption"].tolist() == ["clean", "contrast", "contrast"]
    assert result.errors["severity"].tolist() == [0, 1, 5] and result.summary["clean_error"] == 0
    files = {p.name: p.stat().st_mtime_ns for p in result.root.iterdir()}
    again = evaluation.evaluate(ColourModel(), **kw)
    assert {p.name: p.stat().st_mtime_ns for p in again.root.iterdir()} == files  # cached
    assert again.errors.equals(result.errors)


def test_evaluate_needs_one_source_and_reads_the_baseline_first(cdir, tmp_path):
    with pytest.raises(ValueError, match="not neither"):
        evaluation.evaluate(ColourModel(), progress=False)
    with pytest.raises(ValueError, match="not both"):
        evaluation.evaluate(ColourModel(), cdir, generate_from=(_images(LABELS, 0), LABELS), progress=False)
    with pytest.raises(ValueError, match="nowhere"):
        evaluation.evaluate(ColourModel(), cdir, baseline=tmp_path / "nowhere", out_dir=tmp_path / "rep",
                            progress=False)
    assert not (tmp_path / "rep").exists()


# ---- the CLI -----------------------------------------------------------------------------------------

def _export(path, **meta):
    _register_colour_model()
    save_model(path, ColourModel(), model_name="test_colour", num_classes=3, mean=[0, 0, 0], std=[1, 1, 1],
               meta=meta)
    return path


def test_cli_eval_writes_the_report(cdir, tmp_path, capsys):
    np.save(cdir / "clean.npy", _images(LABELS, 1))
    ckpt = _export(tmp_path / "m.pt", seen_corruptions=["fog"])
    out = tmp_path / "report"
    assert main(["eval", "--checkpoint", str(ckpt), "--data-root", str(cdir), "--out", str(out),
                 "--device", "cpu", "--no-progress", "--batch-size", "5"]) == 0
    assert "mCE (15 benchmark corruptions, unnormalised)" in capsys.readouterr().out
    errors = pd.read_csv(out / "errors.csv")
    assert _cells(errors) == pytest.approx(_expected(), abs=1e-4)  # the CSV keeps 4 decimals
    summary = json.loads((out / "summary.json").read_text())
    exp = _expected()
    assert summary["mce"] is None                                          # 2 of the 15 corruptions
    assert summary["mce_partial"] == pytest.approx(np.mean([exp[c, s] for c in ("gaussian_noise", "fog")
                                                            for s in range(1, 6)]))
    assert summary["clean_error"] == pytest.approx(100 / 6) and summary["seen"] == ["fog"]
    # the same model as its own baseline: normalised mCE is exactly 100 %
    assert main(["eval", "--checkpoint", str(ckpt), "--data-root", str(cdir), "--out", str(tmp_path / "r2"),
                 "--baseline", str(out / "errors.csv"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "r2" / "summary.json").read_text())["normalized_mce"] == pytest.approx(100)


def test_cli_eval_without_matplotlib_lists_only_the_files_written(cdir, tmp_path, capsys, monkeypatch):
    ckpt = _export(tmp_path / "m.pt")
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.png").write_bytes(b"the previous report's plot")
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.warns(UserWarning, match="matplotlib"):
        assert main(["eval", "--checkpoint", str(ckpt), "--data-root", str(cdir), "--out", str(out),
                     "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "report.md)" in stdout and "report.png" not in stdout
    assert not (out / "report.png").exists()


@pytest.mark.parametrize("problem", ["bad_checkpoint", "truncated_file", "labels_differ", "empty_dir",
                                     "bad_baseline", "labels_outside_classes"])
def test_cli_eval_failures_exit_2_and_leave_reports_untouched(cdir, tmp_path, capsys, problem):
    ckpt = _export(tmp_path / "m.pt")
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("previous report")
    (out / "errors.csv").write_text("previous errors")
    args = ["eval", "--checkpoint", str(ckpt), "--data-root", str(cdir), "--out", str(out), "--no-progress"]
    if problem == "bad_checkpoint":
        torch.save({"model": ColourModel().state_dict(), "optimizer": {}}, ckpt)
        expected = "not an auxtrain model file"
    elif problem == "truncated_file":
        (cdir / "fog.npy").write_bytes((cdir / "fog.npy").read_bytes()[:200])
        expected = "fog.npy is truncated"
    elif problem == "labels_differ":
        np.save(cdir / "labels.npy", np.concatenate([LABELS, LABELS[::-1], LABELS, LABELS, LABELS]))
        expected = "labels.npy: the labels of severity block 2 differ"
    elif problem == "labels_outside_classes":  # a -C set of another dataset: labels 3..5, 3 classes
        np.save(cdir / "labels.npy", np.tile(LABELS + 3, 5).astype(np.uint8))
        expected = f"{cdir / 'labels.npy'} holds labels outside the model's 3 classes (0 to 2): 3, 4, 5"
    elif problem == "empty_dir":
        args[4] = str(tmp_path / "empty")
        (tmp_path / "empty").mkdir()
        expected = "holds no corruption"
    else:
        args += ["--baseline", str(tmp_path / "nowhere")]
        expected = "nowhere"
    assert main(args) == 2
    assert expected in capsys.readouterr().err
    assert (out / "report.md").read_text() == "previous report"
    assert (out / "errors.csv").read_text() == "previous errors"
    assert sorted(p.name for p in out.iterdir()) == ["errors.csv", "report.md"]


def test_generate_corrupted_testset_is_cached_and_evaluated(tmp_path):
    pytest.importorskip("corruptions.make_c")
    images = torch.from_numpy(np.concatenate([_images(LABELS, 0)] * 2)).permute(0, 3, 1, 2)  # (12, 3, 8, 8)
    labels = np.concatenate([LABELS, LABELS])
    root = evaluation.generate_corrupted_testset(images, labels, tmp_path / "gen", names="contrast",
                                                 severities="1,5", seed=0, progress=False)
    files = {p.name: p.stat().st_mtime_ns for p in root.iterdir()}
    assert {"contrast.npy", "labels.npy", "clean.npy"} <= set(files)
    again = evaluation.generate_corrupted_testset(images, labels, root, names="contrast", severities="1,5",
                                                  seed=0, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in again.iterdir()} == files  # cached: nothing rewritten
    errors = evaluation.corruption_errors(ColourModel(), root, progress=False)
    assert errors["corruption"].tolist() == ["clean", "contrast", "contrast"]
    assert errors["severity"].tolist() == [0, 1, 5] and errors.iloc[0]["error"] == 0


def _yaml(path, **options):
    import yaml

    path.write_text(yaml.safe_dump({k.replace("_", "-"): v for k, v in options.items()}))
    return path


def test_cli_eval_reads_a_config_file_and_flags_override_it(cdir, tmp_path, monkeypatch):
    from auxtrain.eval_config import EvalConfig

    ckpt = _export(tmp_path / "m.pt")
    configs = []
    real = evaluation.run_eval
    monkeypatch.setattr(evaluation, "run_eval", lambda cfg: configs.append(cfg) or real(cfg))
    conf = _yaml(tmp_path / "eval.yaml", checkpoint=str(ckpt), data_root=str(cdir), out=str(tmp_path / "r"),
                 batch_size=8, corruptions="fog", device="cpu", progress=False)
    assert main(["eval", "-c", str(conf)]) == 0
    assert main(["eval", "-c", str(conf), "--batch-size", "5", "--out", str(tmp_path / "r2")]) == 0
    assert [c.batch_size for c in configs] == [8, 5] and configs[1].out == str(tmp_path / "r2")
    assert configs[0] == EvalConfig(checkpoint=str(ckpt), data_root=str(cdir), out=str(tmp_path / "r"),
                                    batch_size=8, corruptions="fog", device="cpu", progress=False)
    assert pd.read_csv(tmp_path / "r2" / "errors.csv")["corruption"].unique().tolist() == ["fog"]


def test_cli_eval_config_and_flag_errors_name_the_option(cdir, tmp_path, capsys):
    ckpt = _export(tmp_path / "m.pt")
    out = ["--out", str(tmp_path / "r"), "--no-progress"]
    bad = _yaml(tmp_path / "bad.yaml", batch_sise=8)
    cases = [(["-c", str(bad)], "unknown eval option(s) batch_sise"),
             (["--data-root", str(cdir), *out], "--checkpoint is required"),
             (["--checkpoint", str(ckpt), "--data-root", str(cdir), "--corruptions", "fogg", *out],
              "--corruptions='fogg' is neither"),
             (["--checkpoint", str(ckpt), "--data-root", str(cdir), "--severities", "2-1", *out],
              "--severities='2-1'"),
             (["--checkpoint", str(ckpt), "--data-root", str(cdir), "--device", "gpu9", *out],
              "--device 'gpu9'"),
             (["--checkpoint", str(ckpt), "--data-root", str(cdir), "--batch-size", "0", *out],
              "--batch-size 0 must be a positive integer"),
             (["--checkpoint", str(ckpt), *out], "--data-root DIR (the -C folder) is required")]
    for argv, message in cases:
        assert main(["eval", *argv]) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "r").exists()


def test_eval_and_make_c_flags_are_the_config_fields():
    """Each EvalConfig / MakeCConfig field is a flag; without flags the defaults; a flag sets its field."""
    import dataclasses
    import typing

    from auxtrain.cli import _config_from, build_parser
    from auxtrain.eval_config import EvalConfig, MakeCConfig

    parser = build_parser()
    for command, cls in (("eval", EvalConfig), ("make-c", MakeCConfig)):
        assert _config_from(cls, parser.parse_args([command]), command) == cls()
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            flag, kind = "--" + f.name.replace("_", "-"), hints[f.name]
            choices = [a for a in typing.get_args(typing.get_args(kind)[0] if f.default is None else kind)
                       if isinstance(a, str) and a != f.default]
            if kind is bool:
                argv = ["--no-" + flag[2:]] if f.default else [flag]
            elif choices:
                argv = [flag, choices[-1]]
            else:
                argv = [flag, "3" if {int, float} & {kind, *typing.get_args(kind)} else "x"]
            parsed = _config_from(cls, parser.parse_args([command, *argv]), command)
            assert getattr(parsed, f.name) != f.default, (command, f.name)
