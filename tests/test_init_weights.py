"""Starting weights (fit --init / --init-exclude / --pretrained), tv_* keys, and eval --model --weights."""

from __future__ import annotations

import hashlib
import json
import urllib.error

import pytest
import torch
import torchvision
import yaml
from torch import nn

from auxtrain.cli import main
from auxtrain.init_weights import load_weights, parse_model_kwargs, read_state_dict
from auxtrain.models import create_model

TINY = ["--dataset", "shapes", "--train-size", "16", "--test-size", "8", "--batch-size", "8",
        "--epochs", "1", "--corruptions", "noise", "--no-progress", "--no-eval"]


def test_tv_models_have_exactly_torchvisions_keys_both_ways():
    ours = create_model("tv_resnet18", 10).eval()
    theirs = torchvision.models.resnet18(num_classes=10).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))
    back = torchvision.models.resnet18(num_classes=10).eval()
    back.load_state_dict(ours.state_dict(), strict=True)
    mobile = create_model("tv_mobilenet_v3_small", 4)
    expected = list(torchvision.models.mobilenet_v3_small(num_classes=4).state_dict())
    assert list(mobile.state_dict()) == expected


def test_tv_weights_of_the_former_layout_still_load():
    theirs = torchvision.models.resnet18(num_classes=3).eval()
    legacy = {("head." + k if k.startswith("fc.") else "features." + k): v
              for k, v in theirs.state_dict().items()}
    ours = create_model("tv_resnet18", 3).eval()
    ours.load_state_dict(legacy, strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_read_state_dict_unwraps_containers(tmp_path):
    state = nn.Linear(2, 3).state_dict()
    for i, data in enumerate([state, {"state_dict": state}, {"model": state, "epoch": 3},
                              {"module." + k: v for k, v in state.items()}]):
        path = tmp_path / f"w{i}.pt"
        torch.save(data, path)
        assert set(read_state_dict(path)) == {"weight", "bias"}
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "w.safetensors"))
    assert set(read_state_dict(tmp_path / "w.safetensors")) == {"weight", "bias"}
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="--init .*junk.pt: not a readable weights file"):
        read_state_dict(tmp_path / "junk.pt")
    torch.save({"epoch": 3}, tmp_path / "nostate.pt")
    with pytest.raises(ValueError, match="no state_dict found"):
        read_state_dict(tmp_path / "nostate.pt")


def test_load_weights_is_strict_and_lists_every_problem():
    source = torchvision.models.resnet18(num_classes=1000).state_dict()
    model = create_model("tv_resnet18", 5)
    shape = r"tensors of another shape: fc.weight \(1000, 512\).*--init-exclude 'fc\.\*'"
    with pytest.raises(ValueError, match=shape):
        load_weights(model, source, source="tv.pth")
    state = {k: v for k, v in source.items() if k != "conv1.weight"}
    state["extra.weight"] = torch.zeros(1)
    keys = r"keys the model lacks: extra.weight.*model keys the file lacks: conv1.weight"
    with pytest.raises(ValueError, match=keys):
        load_weights(model, state, exclude=["fc.*"], source="tv.pth")
    skipped = load_weights(model, source, exclude=["fc.*"])
    assert skipped == ["fc.bias", "fc.weight"]
    torch.testing.assert_close(model.conv1.weight, source["conv1.weight"])


def test_parse_model_kwargs():
    assert parse_model_kwargs("drop_rate=0.1,img_size=(32, 32),act=relu") == \
        {"drop_rate": 0.1, "img_size": (32, 32), "act": "relu"}
    with pytest.raises(ValueError, match="--model-kwargs .* is not KEY=VALUE"):
        parse_model_kwargs("drop_rate")


@pytest.mark.parametrize("argv,message", [
    (["--init", "{tmp}/missing.pt"], "--init {tmp}/missing.pt does not exist"),
    (["--init-exclude", "fc.*"], "--init-exclude selects keys of the --init file"),
    (["--pretrained"], "--pretrained loads timm's or torchvision's weights: --model resnet20 has none"),
    (["--model-kwargs", "oops"], "--model-kwargs 'oops'"),
])
def test_bad_start_options_fail_before_training(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    out = tmp_path / "run"
    assert main(["fit", *TINY, "--model", "resnet20", *argv, "--out", str(out)]) == 2
    assert message.replace("{tmp}", str(tmp_path)) in capsys.readouterr().err
    assert not out.exists()


def test_fit_init_loads_a_torchvision_state_dict_and_records_its_sha256(tmp_path, capsys):
    torch.manual_seed(1)
    source = torchvision.models.resnet18(num_classes=1000).state_dict()  # ImageNet classifier: excluded
    path = tmp_path / "resnet18_tv.pth"
    torch.save(source, path)
    out = tmp_path / "run"
    code = main(["fit", *TINY, "--model", "tv_resnet18", "--init", str(path), "--init-exclude", "fc.*",
                 "--lr", "1e-12", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    record = yaml.safe_load((out / "config.yaml").read_text())["init"]
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["skipped_keys"] == ["fc.bias", "fc.weight"] and record["exclude"] == ["fc.*"]
    exported = torch.load(out / "model_plain.pt", weights_only=True)["state_dict"]
    torch.testing.assert_close(exported["conv1.weight"], source["conv1.weight"], rtol=0, atol=1e-8)


def test_tv_pretrained_reads_torchvisions_cache_and_fails_clearly_offline(tmp_path, monkeypatch):
    from auxtrain.models.pretrained import torchvision_weights

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)  # never download in a test
    weights = torchvision_weights("mobilenet_v3_small")
    cached = tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    with pytest.raises(ValueError, match=f"put the file .* at {cached}.*--init PATH"):
        create_model("tv_mobilenet_v3_small", 10, pretrained=True)
    source = torchvision.models.mobilenet_v3_small(num_classes=1000).state_dict()
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save(source, cached)
    model = create_model("tv_mobilenet_v3_small", 10, pretrained=True)
    torch.testing.assert_close(model.features[0][0].weight, source["features.0.0.weight"])
    assert model.get_classifier().out_features == 10  # another class count: a fresh classifier


def test_eval_model_weights_takes_a_torchvision_state_dict(tmp_path, capsys):
    torch.manual_seed(0)
    path = tmp_path / "tv.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), path)  # shapes has 10 classes
    common = ["eval", "--generate", "--dataset", "shapes", "--test-size", "20", "--corruptions",
              "gaussian_noise", "--severities", "1", "--no-progress"]
    out = tmp_path / "report"
    code = main([*common, "--model", "tv_resnet18", "--weights", str(path), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    title = json.loads((out / "summary.json").read_text())["title"]
    assert "tv_resnet18" in title and "torchvision ResNet18_Weights.IMAGENET1K_V1 transforms" in title
    assert "0.485/0.229" in title
    own = tmp_path / "own"
    assert main([*common, "--model", "tv_resnet18", "--weights", str(path), "--mean", "0.5,0.5,0.5", "--std",
                 "0.25,0.25,0.25", "--out", str(own)]) == 0
    assert "0.5/0.25 (--mean/--std)" in json.loads((own / "summary.json").read_text())["title"]
    capsys.readouterr()
    assert main([*common, "--model", "resnet20", "--weights", str(path), "--out", str(tmp_path / "x")]) == 2
    assert "does not fit" in capsys.readouterr().err
    torch.save(create_model("resnet20", 10).state_dict(), tmp_path / "r20.pt")
    assert main([*common, "--model", "resnet20", "--weights", str(tmp_path / "r20.pt"), "--out",
                 str(tmp_path / "y")]) == 2
    assert "pass --mean and --std" in capsys.readouterr().err


def test_fit_pretrained_records_torchvisions_file_and_sha256(tmp_path, monkeypatch, capsys):
    from auxtrain.models.pretrained import torchvision_cache_file, torchvision_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = torchvision_cache_file(torchvision_weights("mobilenet_v3_small"))
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=1000).state_dict(), cached)
    out = tmp_path / "run"
    code = main(["fit", *TINY, "--model", "tv_mobilenet_v3_small", "--pretrained", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    record = yaml.safe_load((out / "config.yaml").read_text())["init"]
    assert record["pretrained"] is True
    assert record["source"] == "torchvision MobileNet_V3_Small_Weights.IMAGENET1K_V1"
    assert record["file"] == str(cached)
    assert record["sha256"] == hashlib.sha256(cached.read_bytes()).hexdigest()
