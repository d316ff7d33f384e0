"""timm models: selective-BN conversion and back, AuxiliaryModel around them, timm/<name> in fit."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from auxtrain.auxiliary import AuxiliaryModel
from auxtrain.losses import AuxiliaryLoss
from auxtrain.nn import (
    SelectiveBatchNorm2d,
    SelectiveBatchNormAct2d,
    convert_selective_bn,
    revert_selective_bn,
    route_domains,
)

timm = pytest.importorskip("timm")
from timm.layers import BatchNormAct2d  # noqa: E402

# Small on purpose (32 px, 4 images per domain): the suite runs on a shared CPU.
X = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _norm_types(model: nn.Module) -> list[type]:
    return [type(m) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def _train_routed(model: nn.Module, steps: int = 3) -> None:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(steps):
        with route_domains(model, sizes=[4, 4]):
            loss = model(X).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "mobilenetv3_small_100"])
def test_timm_models_convert_train_revert_and_load_strictly(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10)
    original_types = _norm_types(model)
    convert_selective_bn(model, num_domains=2)
    converted = _norm_types(model)
    assert converted and all(issubclass(t, SelectiveBatchNorm2d) for t in converted)
    assert (BatchNormAct2d in original_types) == (SelectiveBatchNormAct2d in converted)
    _train_routed(model)
    model.eval()
    with torch.no_grad():
        expected = model(X)
    plain = revert_selective_bn(model)
    assert _norm_types(plain) == original_types  # each layer is of its original class again
    fresh = timm.create_model(name, num_classes=10).eval()
    fresh.load_state_dict(plain.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(X), expected, rtol=1e-5, atol=1e-5)


def test_selective_batch_norm_act_normalises_each_domain_then_drops_and_activates():
    bn = BatchNormAct2d(6, act_layer=nn.ReLU)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-1, 1)
    reference = BatchNormAct2d(6, act_layer=nn.ReLU)
    reference.load_state_dict(bn.state_dict())
    selective = convert_selective_bn(bn, num_domains=2)
    assert isinstance(selective, SelectiveBatchNormAct2d) and isinstance(selective.act, nn.ReLU)
    x = torch.randn(8, 6, 5, 5)
    with route_domains(selective, sizes=[3, 5]):
        out = selective(x)
    expected = torch.cat([reference(x[:3]), reference(x[3:])])  # each chunk with its own statistics
    torch.testing.assert_close(out, expected)
    assert (out >= 0).all()  # the activation is kept


def test_bn_free_timm_model_converts_to_itself_and_trains_with_auxiliary_heads():
    torch.manual_seed(0)
    model = timm.create_model("test_convnext", num_classes=10)  # LayerNorm only
    with pytest.warns(UserWarning, match="no BatchNorm2d"):
        net = AuxiliaryModel(model, num_branches=1)
    assert net.selective_bn is False and net.model is model
    aux_before = [p.detach().clone() for p in net.aux_heads.parameters()]
    loss_fn, y = AuxiliaryLoss(alpha=0.5, beta=0.5), torch.randint(0, 10, (4,))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    net.train()
    for _ in range(2):
        out = net(X)
        loss, terms = loss_fn(out.main, out.aux, y, tying=net.weight_tying_penalty(), tying_weight=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert {"aux_ce", "distill", "tying"} <= set(terms) and terms["tying"].detach().item() > 0
    assert any(not torch.equal(a, b) for a, b in zip(aux_before, net.aux_heads.parameters(), strict=True))
    fresh = timm.create_model("test_convnext", num_classes=10)
    fresh.load_state_dict(net.strip().state_dict(), strict=True)


def test_auxiliary_model_around_timm_strips_to_a_strictly_loadable_timm_model():
    torch.manual_seed(0)
    net = AuxiliaryModel(timm.create_model("resnet18", num_classes=10), num_branches=1)
    assert net.main_head.get_classifier() is net.model.fc
    assert len(net.tied_parameters()) == 2  # fc weight and bias
    net.train()
    out = net(X)
    assert out.main.shape == out.aux[0].shape == (4, 10)
    (out.main.sum() + out.aux[0].sum()).backward()
    net.eval()
    with torch.no_grad():
        expected = net(X)
    plain = net.strip()
    assert type(plain) is type(timm.create_model("resnet18"))
    assert not any(isinstance(m, SelectiveBatchNorm2d) for m in plain.modules())
    fresh = timm.create_model("resnet18", num_classes=10).eval()
    fresh.load_state_dict(plain.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(X), expected, rtol=1e-5, atol=1e-5)


def test_attention_head_needs_a_feature_map():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no BatchNorm2d in a ViT
        vit = timm.create_model("test_vit", num_classes=10, img_size=32)
        with pytest.raises(ValueError, match="head='copy'"):
            AuxiliaryModel(vit, num_branches=1, head="attention")


def test_timm_names_listed_and_built():
    from auxtrain.models import create_model, list_models

    assert "timm/resnet18" in list_models("timm/resnet1*")
    model = create_model("timm/mobilenetv3_small_100", 10, drop_rate=0.2)
    assert type(model).__module__.startswith("timm.") and model.num_classes == 10 and model.drop_rate == 0.2


def test_timm_pretrained_offline_says_where_to_put_the_file(monkeypatch, tmp_path):
    import huggingface_hub.constants as hub

    from auxtrain.models import create_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match=r"not in the local Hugging Face cache.*--init PATH"):
        create_model("timm/test_resnet", 10, pretrained=True)


def test_timm_pretrained_reads_a_local_file(tmp_path):
    from auxtrain.models import create_model

    source = timm.create_model("test_resnet")  # its pretrained class count (1000)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    model = create_model("timm/test_resnet", 10, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    first_conv = [next(m for m in net.modules() if isinstance(m, nn.Conv2d)) for net in (model, source)]
    torch.testing.assert_close(first_conv[0].weight, first_conv[1].weight)
    assert model.get_classifier().out_features == 10  # a new classifier for another class count


def test_fit_timm_resnet18_writes_weights_that_load_into_timm(tmp_path, capsys):
    from auxtrain.cli import main

    out = tmp_path / "run"
    code = main(["fit", "--dataset", "shapes", "--train-size", "16", "--test-size", "8", "--batch-size", "8",
                 "--epochs", "1", "--corruptions", "noise", "--model", "timm/resnet18", "--model-kwargs",
                 "drop_rate=0.1", "--no-progress", "--no-eval", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    exported = torch.load(out / "model_plain.pt", weights_only=True)
    meta = exported["meta"]
    assert meta["model"] == "timm/resnet18" and meta["model_kwargs"] == {"drop_rate": 0.1}
    model = timm.create_model("resnet18", num_classes=exported["meta"]["num_classes"], drop_rate=0.1)
    model.load_state_dict(exported["state_dict"], strict=True)


def test_fit_a_bn_free_timm_model_says_selective_bn_is_off(tmp_path, capsys):
    import yaml

    from auxtrain.cli import main

    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="no BatchNorm2d"):
        code = main(["fit", "--dataset", "shapes", "--train-size", "16", "--test-size", "8", "--batch-size",
                     "8", "--epochs", "1", "--corruptions", "noise", "--model", "timm/test_convnext",
                     "--no-progress", "--no-eval", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    doc = yaml.safe_load((out / "config.yaml").read_text())
    assert doc["selective_bn"] == "off: ConvNeXt has no BatchNorm2d layer"


def test_eval_normalisation_comes_from_timms_pretrained_cfg():
    from auxtrain.eval_model import model_normalization
    from auxtrain.models import create_model

    mean, std, source = model_normalization("timm/resnet18", create_model("timm/resnet18", 10))
    assert (mean, std) == (list(timm.data.IMAGENET_DEFAULT_MEAN), list(timm.data.IMAGENET_DEFAULT_STD))
    assert source.startswith("timm pretrained_cfg of resnet18")
    assert model_normalization("resnet20", create_model("resnet20", 10)) is None


def test_timm_names_take_a_pretrained_tag():
    from auxtrain.models import create_model, is_model

    assert is_model("timm/resnet18.a1_in1k") and not is_model("timm/no_such_net.a1_in1k")
    assert create_model("timm/resnet18.a1_in1k", 10).pretrained_cfg["tag"] == "a1_in1k"
