"""Options declared once: flags generated from config dataclasses (auxtrain._flags) and their layers."""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from auxtrain._flags import add_dataclass_arguments, flag_name
from auxtrain.cli import _fit_config, build_parser, main
from auxtrain.config import (
    add_config_file_argument,
    check_choices,
    config_from_args,
    load_config_file,
    merge_config,
)
from auxtrain.resume_options import saved_run_options
from auxtrain.train_config import DATASET_DEFAULTS, TrainConfig


@dataclass
class _Cfg:
    name: str = field(default="a", metadata={"help": "a name", "group": "things", "metavar": "NAME"})
    size: int | None = field(default=None, metadata={"help": "a size", "group": "things"})
    rate: float = field(default=0.5, metadata={"help": "a 50% rate"})
    kind: Literal["x", "y"] = field(default="x", metadata={"help": "the kind"})
    level: Literal[1, 2, 3] | None = field(default=None, metadata={"help": "a level", "nargs": "?",
                                                                       "const": 2})
    fast: bool = field(default=False, metadata={"help": "go fast"})
    color: bool = field(default=True, metadata={"help": "colour", "flag": "--colour", "short": "-k"})
    hidden: str = field(default="h", metadata={"cli": False})


def _parser(cls=_Cfg) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t")
    add_config_file_argument(p)
    add_dataclass_arguments(p, cls)
    return p


def _fit_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["fit"]


def test_every_train_config_field_has_a_flag_in_fit_help(capsys):
    assert main(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    dests = {a.dest for a in _fit_parser()._actions}
    for f in dataclasses.fields(TrainConfig):
        assert f.name in dests, f.name
        assert f"{flag_name(f)} " in out or f"{flag_name(f)}," in out, flag_name(f)
        assert f.metadata.get("help"), f"{f.name} has no help text"
        assert f.metadata.get("cli", True), f"{f.name} is hidden from the command line"


def test_existing_fit_flag_names_are_kept():
    options = {s for a in _fit_parser()._actions for s in a.option_strings}
    for flag in ("-c", "--config", "--no-selective-bn", "--no-eval", "--no-progress", "--channels-last",
                 "--amp", "--eval-root", "--data-root", "--stage-two-start", "--running-stats",
                 "--companions", "--companion-weight", "--companion-threshold", "--no-companion-decay",
                 "--resume", "--overwrite", "--download", "--compile", "--nesterov", "--val-size"):
        assert flag in options, flag


def test_literal_annotations_become_choices_and_checks():
    actions = {a.dest: a for a in _fit_parser()._actions}
    assert actions["mode"].choices == ["auxiliary", "augment", "augmix"]
    assert actions["head"].choices == ["copy", "attention"]
    assert actions["running_stats"].choices == ["clean", "per_domain"]
    assert actions["schedule"].choices == ["step", "cosine", "constant"]
    assert actions["amp"].choices == ["bf16", "fp16"] and actions["amp"].const == "bf16"
    assert _parser().parse_args(["--level"]).level == 2
    assert _parser().parse_args(["--level", "3"]).level == 3
    with pytest.raises(SystemExit):
        _parser().parse_args(["--kind", "z"])
    with pytest.raises(ValueError, match="kind must be one of x, y, got 'z'"):
        check_choices(_Cfg(kind="z"))
    with pytest.raises(ValueError, match="amp must be None or one of bf16, fp16, got 'fp8'"):
        TrainConfig(amp="fp8").resolved()
    with pytest.raises(ValueError, match="head must be one of copy, attention"):
        TrainConfig(head="linear").resolved()
    check_choices(_Cfg(level=None))


def test_bools_are_flag_pairs_and_unset_flags_are_absent():
    p = _parser()
    assert vars(p.parse_args([])) == {"config": None}
    assert p.parse_args(["--fast"]).fast is True and p.parse_args(["--no-fast"]).fast is False
    assert p.parse_args(["--no-colour"]).color is False and p.parse_args(["-k"]).color is True
    assert p.parse_args(["--size", "3"]).size == 3 and p.parse_args(["--rate", "0.25"]).rate == 0.25
    with pytest.raises(SystemExit):
        p.parse_args(["--size", "x"])
    with pytest.raises(SystemExit):
        p.parse_args(["--hidden", "y"])  # cli: False


def test_help_shows_group_metavar_and_defaults():
    text = _parser().format_help()
    assert "things:\n  --name NAME" in text and "--size SIZE" in text
    assert "a name (default: a)" in text and "a 50% rate (default: 0.5)" in text
    assert "go fast (default: off)" in text and "colour (default: on)" in text
    assert "a size\n" in text  # None default: nothing appended
    assert "--hidden" not in text


def test_fit_help_derives_per_dataset_defaults_from_dataset_defaults(capsys):
    assert main(["fit", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    shapes, cifar = DATASET_DEFAULTS["shapes"], DATASET_DEFAULTS["cifar100"]
    assert f"default per dataset: shapes {shapes['epochs']}, CIFAR {cifar['epochs']}" in out
    assert f"shapes {shapes['model']}, CIFAR {cifar['model']}" in out
    assert f"CIFAR {cifar['batch_size']}" in out
    assert "(default: per" not in out


def test_bad_metadata_and_annotations_are_refused():
    @dataclass
    class Typo:
        x: int = field(default=0, metadata={"hepl": "x"})

    @dataclass
    class NoFlag:
        x: list[int] = field(default_factory=list)

    with pytest.raises(TypeError, match="unknown metadata key.*hepl"):
        _parser(Typo)
    with pytest.raises(TypeError, match=r"NoFlag\.x: no command-line flag"):
        _parser(NoFlag)


def test_precedence_defaults_base_file_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: file\nsize: 4\nrate: 0.1\n")
    p = _parser()
    cfg = config_from_args(_Cfg, p.parse_args(["-c", str(path), "--rate", "0.2"]),
                           base={"name": "base", "kind": "y", "fast": True})
    assert cfg == _Cfg(name="file", size=4, rate=0.2, kind="y", fast=True)
    assert config_from_args(_Cfg, p.parse_args([])) == _Cfg()
    seen = []
    config_from_args(_Cfg, p.parse_args(["-c", str(path), "--size", "9"]), base=lambda o: seen.append(o))
    assert seen == [{"name": "file", "size": 9, "rate": 0.1}]


def test_unknown_config_file_keys_are_rejected(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("nmae: x\n")
    with pytest.raises(ValueError, match="unknown t option.*nmae; valid options: color, fast"):
        config_from_args(_Cfg, _parser().parse_args(["-c", str(path)]), base=lambda o: {}, source="t")
    path.write_text("epocs: 3\n")
    assert main(["fit", "-c", str(path), "--out", str(tmp_path / "run")]) == 2
    assert "unknown fit option(s) epocs" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_resume_layers_the_saved_run_under_file_and_flags(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint_last.pt").write_bytes(b"")
    saved = {"dataset": "shapes", "epochs": 3, "lr": 0.05, "seed": 7, "resume": False, "overwrite": True,
             "removed_option": 1}
    (run / "config.yaml").write_text(yaml.safe_dump({"config": saved, "environment": {}}))
    # tying_scale and view_order are newer than this run: they get the values it trained with.
    assert saved_run_options(run) == {"dataset": "shapes", "epochs": 3, "lr": 0.05, "seed": 7,
                                      "tying_scale": "none", "view_order": "crop_then_corrupt"}
    assert saved_run_options(tmp_path / "missing") == {}
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.2\nepochs: 5\n")
    args = _fit_parser().parse_args(["--resume", "--out", str(run), "-c", str(path), "--epochs", "6"])
    cfg = _fit_config(args)
    assert (cfg.seed, cfg.lr, cfg.epochs, cfg.resume, cfg.overwrite) == (7, 0.2, 6, True, False)
    fresh = _fit_config(_fit_parser().parse_args(["--out", str(run)]))  # no --resume: no saved layer
    assert (fresh.seed, fresh.lr, fresh.epochs) == (0, None, None)


def test_options_newer_than_a_run_take_the_values_it_trained_with():
    from auxtrain.resume_options import with_newer_options

    # Saved before tying_scale and view_order (they came together): the old behaviour of both.
    assert with_newer_options({"seed": 1}) == {"seed": 1, "tying_scale": "none",
                                               "view_order": "crop_then_corrupt"}
    # Saved with tying_scale but before view_order: that version already corrupted before the crop.
    assert with_newer_options({"tying_scale": "step_lr"})["view_order"] == "corrupt_then_crop"
    assert with_newer_options({"tying_scale": "none", "view_order": "crop_then_corrupt"}) == {
        "tying_scale": "none", "view_order": "crop_then_corrupt"}


# ---------------------------------------------------------------- config files and TrainConfig


@dataclasses.dataclass
class _FileCfg:
    epochs: int = 10
    data_root: str | None = None
    lr: float = 0.1


@pytest.mark.parametrize("suffix,text", [(".yaml", "epochs: 3\ndata-root: d\n"),
                                         (".toml", 'epochs = 3\ndata_root = "d"\n')])
def test_config_file_precedence_defaults_file_flags(tmp_path, suffix, text):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    cfg = merge_config(_FileCfg, load_config_file(path), {"lr": 0.5})
    assert cfg == _FileCfg(epochs=3, data_root="d", lr=0.5)
    assert merge_config(_FileCfg, load_config_file(path), {"epochs": 7}).epochs == 7


def test_config_file_rejects_unknown_keys_with_the_valid_names(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epocs: 3\n")
    with pytest.raises(ValueError, match=r"option\(s\) epocs; valid options: data_root, epochs, lr"):
        merge_config(_FileCfg, load_config_file(path))
    with pytest.raises(ValueError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml")
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(ValueError, match=r"\.yaml, \.yml or \.toml"):
        load_config_file(tmp_path / "c.json")
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(ValueError, match="could not be parsed"):
        load_config_file(tmp_path / "bad.yaml")


def test_train_config_defaults_follow_the_recipe():
    from auxtrain.training import TrainConfig

    cfg = TrainConfig(dataset="cifar100").resolved()
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size, cfg.epochs) == (0.1, 0.9, 5e-4, 128, 210)
    assert (cfg.alpha, cfg.beta, cfg.temperature, cfg.gamma, cfg.nesterov) == (0.05, 0.05, 1.0, 1.0, False)
    shapes = TrainConfig().resolved()
    assert shapes.model == "resnet20" and shapes.epochs <= 20 and shapes.out.startswith("runs")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        TrainConfig(dataset="mnist").resolved()
    with pytest.raises(ValueError, match="mode must be one of auxiliary, augment"):
        TrainConfig(mode="naive").resolved()
    assert math.isclose(TrainConfig(epochs=7).resolved().epochs, 7)


def test_stage_two_start_must_be_an_epoch_of_the_run():
    from auxtrain.training import TrainConfig

    assert [TrainConfig(epochs=5, stage_two_start=s).resolved().stage_two_start for s in (0, 4)] == [0, 4]
    for start in (5, 9):  # stage two would never start
        with pytest.raises(ValueError, match=rf"--stage-two-start {start} .*--epochs 5 .*0 to 4"):
            TrainConfig(epochs=5, stage_two_start=start).resolved()
    with pytest.raises(ValueError, match=r"--stage-two-start 12 .*--epochs 12 .*0 to 11"):
        TrainConfig(stage_two_start=12).resolved()  # against the dataset's default epochs (shapes 12)
    with pytest.raises(ValueError, match="--stage-two-start -1"):
        TrainConfig(epochs=5, stage_two_start=-1).resolved()
    # With --gamma 0 stage two does nothing, so any start is accepted; negative ones are still wrong.
    assert TrainConfig(epochs=5, stage_two_start=9, gamma=0).resolved().stage_two_start == 9
    with pytest.raises(ValueError, match="--stage-two-start -1 must be a 0-based epoch"):
        TrainConfig(epochs=5, stage_two_start=-1, gamma=0).resolved()


def test_eval_options_are_checked_up_front_and_accept_a_custom_c_set(tmp_path):
    import numpy as np

    # A CIFAR-C style folder with a custom corruption (not in the vocabulary) at severities 1-5.
    np.save(tmp_path / "my_warp.npy", np.zeros((10, 8, 8, 3), np.uint8))
    np.save(tmp_path / "labels.npy", np.zeros(10, np.int64))
    cfg = TrainConfig(eval_root=str(tmp_path), eval_corruptions="my_warp", eval_severities="1,5").resolved()
    assert cfg.eval_root == str(tmp_path)
    with pytest.raises(ValueError, match="--eval-corruptions='my_warp'"):  # only a file of --eval-root
        TrainConfig(eval_corruptions="my_warp").resolved()
    with pytest.raises(ValueError, match="--eval-corruptions"):
        TrainConfig(eval_root=str(tmp_path), eval_corruptions="bogus").resolved()
    # Without evaluation the folder is not needed (a config file from another machine).
    assert TrainConfig(eval=False, eval_root=str(tmp_path / "elsewhere")).resolved().eval is False
    with pytest.raises(ValueError, match="--eval-severities"):
        TrainConfig(eval=False, eval_severities="0").resolved()
