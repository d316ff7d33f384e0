"""auxtrain.export: the exported model file (weights_only-loadable) and NormalizedModel."""

from __future__ import annotations

import pytest
import torch

from auxtrain.export import NormalizedModel, load_model, read_model_file, save_model
from auxtrain.models import create_model

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


@pytest.fixture
def exported(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10).eval()
    path = tmp_path / "sub" / "model_plain.pt"
    save_model(path, model, model_name="resnet20", num_classes=10, mean=MEAN, std=STD,
               meta={"dataset": "shapes", "image_size": (32, 32), "corruptions": [["gaussian_noise"], []],
                     "seed": 3, "metrics": {"test_acc": 91.5}})
    return path, model


def test_round_trip_matches_the_normalised_backbone(exported):
    path, model = exported
    loaded = load_model(path)
    assert isinstance(loaded, NormalizedModel) and not loaded.training
    x = torch.rand(4, 3, 32, 32)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model((x - mean) / std)
        assert torch.allclose(loaded(x), expected, atol=1e-5)
        assert torch.allclose(loaded((x * 255).round().to(torch.uint8)),
                              model(((x * 255).round() / 255 - mean) / std), atol=1e-5)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value)
    meta = loaded.meta
    assert meta["model"] == "resnet20" and meta["num_classes"] == 10 and meta["mean"] == list(MEAN)
    assert meta["image_size"] == [32, 32] and meta["corruptions"] == [["gaussian_noise"], []]
    assert meta["seed"] == 3 and meta["metrics"] == {"test_acc": 91.5}
    assert meta["torch_version"] == torch.__version__ and "auxtrain_version" in meta


def test_file_is_a_plain_weights_only_dict(exported):
    path, model = exported
    data = torch.load(path, weights_only=True)
    assert data["format"] == "auxtrain.model" and data["format_version"] == 1
    assert set(data["state_dict"]) == set(model.state_dict())
    assert not list(path.parent.glob("*.tmp"))
    create_model("resnet20", num_classes=10).load_state_dict(data["state_dict"], strict=True)


def test_save_replaces_atomically_and_unwraps_normalized_model(exported):
    path, _ = exported
    loaded = load_model(path)
    with torch.no_grad():
        loaded.model.get_classifier().bias.fill_(1.0)
    save_model(path, loaded, model_name="resnet20", num_classes=10, mean=MEAN, std=STD)
    again = load_model(path)
    assert torch.equal(again.model.get_classifier().bias, torch.ones(10))
    assert "seed" not in again.meta  # a fresh file, not merged with the old one


def test_meta_values_must_be_weights_only_types(tmp_path):
    with pytest.raises(TypeError, match="meta value meta.when"):
        save_model(tmp_path / "m.pt", torch.nn.Linear(2, 2), model_name="x", num_classes=2, mean=[0], std=[1],
                   meta={"when": object()})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("damage, message", [
    ("missing", "does not exist"),
    ("truncated", "may be truncated or corrupt"),
    ("training_checkpoint", "looks like a training checkpoint"),
    ("bare_state_dict", "bare state dict"),
    ("version", "format_version 99"),
    ("no_meta", "lacks"),
    ("unknown_model", "cannot build model 'no_such_net'"),
    ("wrong_weights", "the weights do not fit model 'resnet20'"),
])
def test_bad_files_raise_value_errors_naming_the_file(exported, damage, message):
    path, model = exported
    data = torch.load(path, weights_only=True)
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "training_checkpoint":
        torch.save({"model": model.state_dict(), "optimizer": {}, "epoch": 3}, path)
    elif damage == "bare_state_dict":
        torch.save(model.state_dict(), path)
    elif damage == "version":
        torch.save({**data, "format_version": 99}, path)
    elif damage == "no_meta":
        torch.save({**data, "meta": {"model": "resnet20"}}, path)
    elif damage == "unknown_model":
        torch.save({**data, "meta": {**data["meta"], "model": "no_such_net"}}, path)
    elif damage == "wrong_weights":
        torch.save({**data, "meta": {**data["meta"], "num_classes": 7}}, path)
    with pytest.raises(ValueError, match=message) as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_read_model_file_and_device(exported):
    path, _ = exported
    assert read_model_file(path)["meta"]["dataset"] == "shapes"
    loaded = load_model(path, device="cpu")
    assert loaded.normalize.mean.device.type == "cpu" and next(loaded.parameters()).device.type == "cpu"
    with pytest.raises(ValueError, match="std > 0"):
        NormalizedModel(torch.nn.Identity(), [0.5], [0.0])
