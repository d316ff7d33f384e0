"""AuxiliaryModel: stacked single pass, heads, companions, strip(), selective-BN statistics."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from auxtrain.auxiliary import AttentionHead, AuxiliaryModel, AuxiliaryOutput
from auxtrain.losses import AuxiliaryLoss, self_distillation, weight_tying_penalty
from auxtrain.models import create_model

NUM_CLASSES = 10


def _wrapped(k: int, name: str = "resnet20", seed: int = 0, **kw) -> AuxiliaryModel:
    torch.manual_seed(seed)
    return AuxiliaryModel(create_model(name, NUM_CLASSES), num_branches=k, **kw)


def _stacked(k: int, b: int = 4, size: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((k + 1) * b, 3, size, size, generator=g)


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("k", [0, 1, 4])
@pytest.mark.parametrize("head", ["copy", "attention"])
def test_output_shapes(k, head):
    model = _wrapped(k, head=head).train()
    out = model(_stacked(k, b=3))
    assert isinstance(out, AuxiliaryOutput) and out.companions == {}
    main, aux, _ = out
    assert main.shape == (3, NUM_CLASSES)
    assert len(aux) == k and all(a.shape == (3, NUM_CLASSES) for a in aux)
    assert len(model.aux_heads) == k
    if head == "attention" and k:
        assert isinstance(model.aux_heads[0], AttentionHead)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(5, 3, 16, 16))  # eval: an ordinary clean batch of any size
    assert isinstance(out, torch.Tensor) and out.shape == (5, NUM_CLASSES)


def test_batch_not_divisible_raises():
    model = _wrapped(2).train()
    with pytest.raises(ValueError, match="num_branches \\+ 1 = 3"):
        model(torch.randn(8, 3, 16, 16))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="num_branches"):
        AuxiliaryModel(create_model("resnet20", 10), num_branches=-1)
    with pytest.raises(ValueError, match="head"):
        AuxiliaryModel(create_model("resnet20", 10), num_branches=1, head="mlp")
    with pytest.raises(ValueError, match="stages"):
        AuxiliaryModel(create_model("resnet20", 10), num_branches=1, companions=["layer9"])
    with pytest.raises(TypeError, match="create_model"):
        AuxiliaryModel(nn.Sequential(nn.Conv2d(3, 4, 3)), num_branches=1)


def test_zero_branches_is_ordinary_training():
    torch.manual_seed(0)
    plain = create_model("resnet20", NUM_CLASSES)
    model = AuxiliaryModel(copy.deepcopy(plain), num_branches=0).train()
    x = _stacked(0, b=6)
    main, aux, _ = model(x)
    assert aux == []
    torch.testing.assert_close(main, plain.train()(x), rtol=1e-5, atol=1e-5)


def test_stacked_pass_equals_plain_model_on_clean_chunk_and_keeps_clean_stats():
    """Selective BN: the clean chunk is normalised alone, and the running statistics come from it only."""
    torch.manual_seed(0)
    plain = create_model("resnet20", NUM_CLASSES).train()
    model = AuxiliaryModel(copy.deepcopy(plain), num_branches=2).train()
    x = _stacked(2, b=4)
    x[4:] = x[4:] * 5.0 + 3.0  # corrupted chunks with very different statistics
    for _ in range(2):
        main, _, _ = model(x)
        ref = plain(x[:4])
    torch.testing.assert_close(main, ref, rtol=1e-4, atol=1e-5)
    stripped = model.strip()
    for (name, a), b in zip(stripped.state_dict().items(), plain.state_dict().values(), strict=True):
        if "running" in name:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_strip_equals_main_output_and_loads_into_plain_model():
    model = _wrapped(2, companions=["layer2"], head="attention").train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    target = torch.randint(0, NUM_CLASSES, (4,))
    loss_fn = AuxiliaryLoss()
    for _ in range(2):  # move weights and running statistics away from their initial values
        main, aux, comps = model(_stacked(2))
        loss, _ = loss_fn(main, aux, target, tying=model.weight_tying_penalty(), tying_weight=1.0,
                          companions=comps, companion_weight=0.3)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    stripped = model.strip().eval()
    assert not any(type(m).__name__.startswith("Selective") for m in stripped.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in stripped.modules()) > 0
    fresh = create_model("resnet20", NUM_CLASSES)
    assert _params(stripped) == _params(fresh)
    fresh.load_state_dict(stripped.state_dict(), strict=True)
    fresh.eval()
    x = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(stripped(x), expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(fresh(x), expected, rtol=0, atol=1e-6)
    assert stripped is not model.model


def test_distillation_gradient_reaches_aux_head_and_extractor_not_main_head():
    model = _wrapped(1).train()
    main, (aux,), _ = model(_stacked(1))
    self_distillation(aux, main).backward()
    main_grads = [p.grad for p in model.main_head.parameters()]
    assert all(g is None or g.abs().sum() == 0 for g in main_grads)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.aux_heads[0].parameters())
    assert model.model.conv1.weight.grad.abs().sum() > 0


def test_weight_tying_penalty_on_wrapped_heads():
    model = _wrapped(3)
    assert weight_tying_penalty(model.main_head, model.aux_heads).item() == 0.0
    assert len(model.tied_parameters()) == 3 * len(list(model.main_head.parameters()))
    with torch.no_grad():
        model.aux_heads[1].fc.weight.add_(0.1)
    first = weight_tying_penalty(model.main_head, model.aux_heads).item()
    with torch.no_grad():
        model.aux_heads[1].fc.weight.add_(0.1)
    assert 0 < first < weight_tying_penalty(model.main_head, model.aux_heads).item()


def test_attention_heads_tie_only_the_final_linear():
    model = _wrapped(2, head="attention")
    pairs = model.tied_parameters()
    assert len(pairs) == 4  # weight and bias of each head's final linear
    fcs = {id(p) for head in model.aux_heads for p in head.get_classifier().parameters()}
    assert all(id(q) in fcs for _, q in pairs)
    assert weight_tying_penalty(model.main_head, model.aux_heads).item() == 0.0


def test_companions_on_clean_chunk_and_removed_by_strip():
    model = _wrapped(2, companions=["layer1", "layer2"], companion_channels=8).train()
    assert _params(model.strip()) == _params(create_model("resnet20", NUM_CLASSES))
    main, aux, comps = model(_stacked(2, b=3))
    assert set(comps) == {"layer1", "layer2"}
    assert all(c.shape == (3, NUM_CLASSES) for c in comps.values())
    comps["layer1"].sum().backward()
    assert model.model.layer1[0].conv1.weight.grad.abs().sum() > 0
    assert model.model.layer3[0].conv1.weight.grad is None  # only the layers below the stage
    model.eval()
    with torch.no_grad():
        out = model.forward_branches(torch.randn(6, 3, 16, 16))  # the stacked pass in eval mode too
        assert isinstance(model(torch.randn(2, 3, 16, 16)), torch.Tensor)  # eval: main logits only
    assert len(out.aux) == 2 and out.companions["layer2"].shape == (2, NUM_CLASSES)


def test_channels_last_and_autocast():
    model = _wrapped(2).train().to(memory_format=torch.channels_last)
    x = _stacked(2, b=2).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        main, aux, _ = model(x)
    assert main.shape == (2, NUM_CLASSES) and len(aux) == 2
    (main.float().sum() + sum(a.float().sum() for a in aux)).backward()
    assert model.model.conv1.weight.grad is not None


def test_torchvision_backbone_can_be_wrapped():
    torch.manual_seed(0)
    backbone = create_model("tv_mobilenet_v3_small", 4)
    model = AuxiliaryModel(backbone, num_branches=1, companions=[backbone.stage_names[1]]).train()
    main, aux, comps = model(torch.randn(4, 3, 64, 64))
    assert main.shape == (2, 4) and aux[0].shape == (2, 4) and len(comps) == 1
    stripped = model.strip()
    create_model("tv_mobilenet_v3_small", 4).load_state_dict(stripped.state_dict(), strict=True)


def test_per_domain_running_stats_strip_to_the_clean_statistics():
    torch.manual_seed(0)
    plain = create_model("resnet20", NUM_CLASSES).train()
    model = AuxiliaryModel(copy.deepcopy(plain), num_branches=1, running_stats="per_domain").train()
    x = _stacked(1, b=4)
    x[4:] = x[4:] * 5.0 + 3.0
    model(x)
    plain(x[:4])
    stripped = model.strip().eval()
    for (name, a), b in zip(stripped.state_dict().items(), plain.state_dict().values(), strict=True):
        if "running" in name:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    model.eval()
    with torch.no_grad():
        y = torch.randn(3, 3, 16, 16)
        torch.testing.assert_close(stripped(y), model(y), rtol=0, atol=1e-6)


def test_without_selective_bn_views_share_statistics():
    """The ablation switch: plain BN normalises the stacked views together, so the clean output changes."""
    torch.manual_seed(0)
    plain = create_model("resnet20", NUM_CLASSES).train()
    model = AuxiliaryModel(copy.deepcopy(plain), num_branches=2, selective_bn=False).train()
    assert not any(type(m).__name__ == "SelectiveBatchNorm2d" for m in model.modules())
    x = _stacked(2, b=4)
    x[4:] = x[4:] * 5.0 + 3.0
    main, aux, _ = model(x)
    full = plain.forward_head(plain.forward_features(x))  # one plain pass over the whole stack
    torch.testing.assert_close(main, full[:4], rtol=1e-4, atol=1e-5)
    assert len(aux) == 2 and not torch.allclose(main, plain(x[:4]), atol=1e-3)
    create_model("resnet20", NUM_CLASSES).load_state_dict(model.strip().state_dict())


def test_model_owns_normalisation_of_uint8_and_unit_float_input():
    torch.manual_seed(0)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    own = AuxiliaryModel(create_model("resnet20", NUM_CLASSES), num_branches=1, mean=mean, std=std).eval()
    bare = copy.deepcopy(own)
    bare.normalize = nn.Identity()
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    by_hand = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std)[:, None, None]
    with torch.no_grad():
        torch.testing.assert_close(own(images), bare(by_hand), rtol=0, atol=0)
        torch.testing.assert_close(own(images.float() / 255), bare(by_hand), rtol=0, atol=0)
    assert set(own.state_dict()) == set(bare.state_dict())  # the statistics are not in the state_dict
    with pytest.raises(ValueError, match="mean= and std="):
        AuxiliaryModel(create_model("resnet20", NUM_CLASSES), num_branches=1, mean=mean)


# ---------------------------------------------------------------- stacked pass vs separate passes


def _one_step(model: AuxiliaryModel, x, y, separate: bool):
    """Forward (stacked tensor or list of chunks), AuxiliaryLoss in stage two, backward."""
    k = model.num_branches
    out = model(list(x.split(x.shape[0] // (k + 1))) if separate else x)
    loss, terms = AuxiliaryLoss()(out.main, out.aux, y, tying=model.weight_tying_penalty(), tying_weight=1.0,
                                  companions=out.companions, companion_weight=0.3)
    loss.backward()
    return out, loss, terms


@pytest.mark.parametrize("kw", [{}, {"head": "attention", "companions": ["layer2"]},
                                {"running_stats": "per_domain"}])
def test_separate_passes_equal_the_stacked_pass(kw):
    """Same outputs, losses, gradients and running statistics (float64), over two steps."""
    k, b = 2, 4
    stacked = _wrapped(k, **kw).double().train()
    separate = copy.deepcopy(stacked)
    x = _stacked(k, b=b).double()
    x[b:] = x[b:] * 3.0 + 1.0  # views with statistics of their own
    y = torch.arange(b) % NUM_CLASSES
    for _ in range(2):
        (out_a, loss_a, terms_a), (out_b, loss_b, terms_b) = (
            _one_step(m, x, y, separate=m is separate) for m in (stacked, separate))
        torch.testing.assert_close(loss_b, loss_a, rtol=1e-12, atol=1e-12)
        assert terms_a.keys() == terms_b.keys()
        for name in terms_a:
            torch.testing.assert_close(terms_b[name], terms_a[name], rtol=1e-12, atol=1e-12)
        for a, c in zip([out_a.main, *out_a.aux, *out_a.companions.values()],
                        [out_b.main, *out_b.aux, *out_b.companions.values()], strict=True):
            torch.testing.assert_close(c, a, rtol=1e-12, atol=1e-12)
        for (name, p), q in zip(stacked.named_parameters(), separate.parameters(), strict=True):
            assert (p.grad is None) == (q.grad is None), name
            if p.grad is not None:
                torch.testing.assert_close(q.grad, p.grad, rtol=1e-10, atol=1e-12, msg=name)
            p.grad = q.grad = None
    buffers_a, buffers_b = dict(stacked.named_buffers()), dict(separate.named_buffers())
    assert buffers_a.keys() == buffers_b.keys()
    for name, value in buffers_a.items():  # clean (or per-domain) running statistics, batch counts
        torch.testing.assert_close(buffers_b[name], value, rtol=1e-12, atol=1e-12, msg=name)
    # The clean running statistics are the clean chunk's alone: a plain model fed only it agrees.
    torch.manual_seed(0)
    plain = create_model("resnet20", NUM_CLASSES).double().train()
    for _ in range(2):
        plain(x[:b])
    for name, value in plain.state_dict().items():
        if "running" in name:
            torch.testing.assert_close(buffers_b["model." + name], value, rtol=1e-10, atol=1e-12, msg=name)


def test_separate_passes_need_one_chunk_per_domain_and_selective_bn():
    model = _wrapped(2).train()
    with pytest.raises(ValueError, match="got 2 chunks for num_branches \\+ 1 = 3"):
        model([torch.randn(4, 3, 16, 16)] * 2)
    shared = _wrapped(2, selective_bn=False).train()
    with pytest.raises(ValueError, match="separate passes need selective BN"):
        shared([torch.randn(4, 3, 16, 16)] * 3)
