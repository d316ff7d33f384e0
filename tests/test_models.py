"""Backbone registry and the timm-style interface of every registered model."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

from auxtrain.models import TorchvisionAdapter, create_model, list_models

CIFAR_MODELS = [n for n in list_models() if not n.startswith(("tv_", "timm/")) and n not in ("wrn28_10",)]
# Inputs are 16 px (every CIFAR model accepts it) to keep the suite fast on a shared CPU.
LIGHT_MODELS = ["resnet18", "resnet20", "preactresnet18"]


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_required_names_registered():
    names = set(list_models())
    required = {
        "resnet18", "resnet34", "resnet50", "resnet20", "resnet32", "resnet56", "preactresnet18",
        "wrn40_2", "densenet_bc_100", "tv_resnet18", "tv_resnet50", "tv_mobilenet_v3_small",
    }  # fmt: skip
    assert required <= names


@pytest.mark.parametrize(
    "name, num_classes, expected",
    [
        ("resnet18", 100, 11_220_132),  # the CIFAR ResNet-18 every CIFAR-100 paper reports
        ("resnet8", 10, 75_290),  # one block per stage: 0.08M
        ("resnet20", 10, 269_722),  # He et al.: 0.27M
        ("resnet56", 10, 853_018),  # He et al.: 0.85M
        ("wrn40_2", 10, 2_243_546),  # Zagoruyko & Komodakis / AugMix: 2.2M
        ("densenet_bc_100", 100, 800_032),  # Huang et al.: 0.8M (DenseNet-BC, k=12, L=100)
    ],
)
def test_parameter_counts(name, num_classes, expected):
    assert _num_params(create_model(name, num_classes)) == expected


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_interface_and_shapes(name):
    torch.manual_seed(0)
    model = create_model(name, 7).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
        pooled = model.forward_head(features, pre_logits=True)
    assert features.dim() == 4 and features.shape[:2] == (2, model.num_features)
    assert logits.shape == (2, 7) and model.num_classes == 7
    assert pooled.shape == (2, model.num_features)
    torch.testing.assert_close(logits, model.forward_head(features), rtol=0, atol=0)
    fc = model.get_classifier()
    assert isinstance(fc, nn.Linear) and fc.out_features == 7
    assert len(model.stage_names) == len(model.stage_channels) >= 3
    for stage in model.stage_names:
        assert isinstance(model.get_submodule(stage), nn.Module)


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_forward_stages_collects_named_outputs(name):
    model = create_model(name, 10).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        features, stages = model.forward_stages(x, model.stage_names)
        torch.testing.assert_close(features, model.forward_features(x))
    assert list(stages) == list(model.stage_names)
    for stage, channels in zip(model.stage_names, model.stage_channels, strict=True):
        assert stages[stage].shape[:2] == (2, channels)
    assert not any(m._forward_hooks for m in model.modules()), "hooks must not outlive the call"
    with pytest.raises(ValueError, match="valid stage names"):
        model.forward_stages(x, ["nope"])


def test_resnet_stem_has_relu_and_no_maxpool():
    model = create_model("resnet18", 10)
    assert isinstance(model.relu, nn.ReLU)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.conv1.stride == (1, 1) and model.conv1.kernel_size == (3, 3)
    # 32 px input -> 4x4 map after three stride-2 stages.
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 512, 4, 4)


def test_cifar_resnet_shortcut_options():
    a = create_model("resnet20", 10)  # option A: parameter-free shortcuts
    b = create_model("resnet20", 10, shortcut="B")
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in a.modules())
    assert _num_params(b) > _num_params(a)
    assert b(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="shortcut"):
        create_model("resnet20", 10, shortcut="C")


def test_cifar_resnet_zero_init_residual_starts_each_block_as_its_shortcut():
    from auxtrain.models.cifar_resnet import CifarBasicBlock

    zero = create_model("resnet20", 10, zero_init_residual=True)
    blocks = [m for m in zero.modules() if isinstance(m, CifarBasicBlock)]
    assert len(blocks) == 9 and all(torch.all(b.bn2.weight == 0) for b in blocks)
    block = blocks[0].eval()  # identity shortcut: the block is relu(x) of its input
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(block(x), torch.relu(x))
    default = create_model("resnet20", 10)
    assert all(torch.all(m.bn2.weight == 1) for m in default.modules() if isinstance(m, CifarBasicBlock))


def test_create_model_drops_none_kwargs_and_validates():
    model = create_model("resnet20", 10, shortcut=None, zero=None)  # None options keep the defaults
    assert _num_params(model) == 269_722
    with pytest.raises(ValueError, match="resnet18"):
        create_model("resnet19", 10)
    with pytest.raises(ValueError, match="valid names"):
        create_model("no_such_model", 10)
    with pytest.raises(ValueError, match="num_classes"):
        create_model("resnet20", 0)


def test_list_models_filters():
    assert list_models("resnet2*") == ["resnet20"]
    assert all(n.startswith("tv_") for n in list_models("tv_*"))
    assert list_models() == sorted(list_models())


def test_state_dict_round_trip_between_instances():
    a, b = create_model("resnet20", 10), create_model("resnet20", 10)
    b.load_state_dict(a.state_dict(), strict=True)
    a.eval(), b.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(a(x), b(x))


def test_channels_last():
    model = create_model("resnet20", 10).eval().to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).to(memory_format=torch.channels_last)
    ref = create_model("resnet20", 10).eval()
    ref.load_state_dict(model.state_dict())
    torch.testing.assert_close(model(x), ref(x.contiguous()), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "tv_name",
    [
        "resnet18",
        "mobilenet_v3_small",  # hidden MLP between pooling and the final linear
        "shufflenet_v2_x0_5",
        pytest.param("convnext_tiny", marks=pytest.mark.slow),  # LayerNorm2d before flattening
        pytest.param("densenet121", marks=pytest.mark.slow),  # ReLU after the features
    ],
)
def test_torchvision_adapter_matches_torchvision(tv_name):
    torch.manual_seed(0)
    tv_model = torchvision.models.get_model(tv_name, weights=None, num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = tv_model(x)
        adapter = TorchvisionAdapter(tv_model).eval()
        out = adapter(x)
        features = adapter.forward_features(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert features.shape[1] == adapter.num_features and adapter.get_classifier().out_features == 5
    for stage in adapter.stage_names:
        adapter.get_submodule(stage)


def test_tv_models_at_imagenet_resolution():
    model = create_model("tv_resnet18", 11).eval()
    with torch.no_grad():
        features, stages = model.forward_stages(torch.randn(1, 3, 224, 224), model.stage_names)
    assert features.shape == (1, 512, 7, 7)
    assert [stages[s].shape[1] for s in model.stage_names] == list(model.stage_channels)
    assert model.forward_head(features).shape == (1, 11)
    small = create_model("tv_mobilenet_v3_small", 3)
    assert small.get_classifier().in_features == 1024 and small.num_features == 576
    assert small.forward_head(torch.randn(2, 576, 7, 7), pre_logits=True).shape == (2, 1024)


def test_tv_adapter_refuses_a_weights_argument():
    with pytest.raises(ValueError, match="pretrained=True"):
        create_model("tv_resnet18", 10, weights="IMAGENET1K_V1")


@pytest.mark.parametrize("training", [False, True])
def test_torchvision_adapter_keeps_the_wrapped_models_mode(training):
    import torchvision

    from auxtrain.models import TorchvisionAdapter

    model = torchvision.models.resnet18(num_classes=4).train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapter = TorchvisionAdapter(model)
    assert adapter.training is training
    assert all(m.training is training for m in adapter.modules())
    after = model.state_dict()  # the adapter reuses the modules: the dry run recorded no statistics
    assert all(torch.equal(before[k], after[k]) for k in before)
