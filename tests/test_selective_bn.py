"""SelectiveBatchNorm2d, route_domains and convert/revert: checked against nn.BatchNorm2d."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import auxtrain.nn.selective_bn as selective_bn
from auxtrain.nn import SelectiveBatchNorm2d, convert_selective_bn, revert_selective_bn, route_domains

TOL = 1e-10
C = 5


def _layer(num_domains=3, running_stats="clean", momentum=0.1, **kw) -> SelectiveBatchNorm2d:
    torch.manual_seed(0)
    bn = SelectiveBatchNorm2d(C, num_domains, momentum=momentum, running_stats=running_stats, **kw).double()
    with torch.no_grad():
        if bn.affine:
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-1.0, 1.0)
        bn.running_mean.uniform_(-1.0, 1.0)
        bn.running_var.uniform_(0.5, 2.0)
    return bn


def _plain_copy(bn: SelectiveBatchNorm2d, domain: int = 0) -> nn.BatchNorm2d:
    """A BatchNorm2d with bn's affine parameters and domain ``domain``'s running statistics (clean ones
    when bn keeps no per-domain statistics)."""
    ref = nn.BatchNorm2d(C, eps=bn.eps, momentum=bn.momentum, affine=bn.affine).double()
    state = {k: v for k, v in bn.state_dict().items() if not k.startswith("domain_")}
    if domain > 0 and bn.per_domain:
        state["running_mean"] = bn.domain_running_mean[domain - 1].clone()
        state["running_var"] = bn.domain_running_var[domain - 1].clone()
        state["num_batches_tracked"] = bn.domain_num_batches_tracked[domain - 1].clone()
    ref.load_state_dict(state)
    return ref


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = TOL) -> bool:
    return a.shape == b.shape and (a.double() - b.double()).abs().max().item() <= tol


def _input(n: int, h: int = 3, w: int = 4, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, C, h, w, generator=g, dtype=torch.float64) * 2 + 0.5).requires_grad_()


@pytest.mark.parametrize("momentum", [0.1, None])
def test_without_route_is_batchnorm2d(momentum):
    bn = _layer(momentum=momentum)
    ref = _plain_copy(bn)
    for step in range(3):
        x = _input(6, seed=step)
        xr = x.detach().clone().requires_grad_()
        y, yr = bn(x), ref(xr)
        g = torch.randn_like(y)
        y.backward(g)
        yr.backward(g)
        assert _close(y, yr) and _close(x.grad, xr.grad)
        assert _close(bn.weight.grad, ref.weight.grad) and _close(bn.bias.grad, ref.bias.grad)
        assert _close(bn.running_mean, ref.running_mean) and _close(bn.running_var, ref.running_var)
        assert int(bn.num_batches_tracked) == int(ref.num_batches_tracked) == step + 1
    bn.eval()
    ref.eval()
    x = _input(4, seed=9)
    assert _close(bn(x), ref(x))


@pytest.mark.parametrize("sizes", [[3, 5, 2], [4, 4, 4], [6, 2]])
@pytest.mark.parametrize("running_stats", ["clean", "per_domain"])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_sizes_route_matches_batchnorm_per_chunk(sizes, running_stats, momentum):
    bn = _layer(running_stats=running_stats, momentum=momentum)
    refs = [_plain_copy(bn, d) for d in range(len(sizes))]
    for step in range(2):  # two steps so the running averages (and momentum=None counts) compound
        x = _input(sum(sizes), seed=step)
        with route_domains(bn, sizes=sizes):
            y = bn(x)
        g = torch.randn_like(y)
        y.backward(g)
        for ref, xc, yc, gc, gxc in zip(refs, x.detach().split(sizes), y.split(sizes), g.split(sizes),
                                        x.grad.split(sizes), strict=True):
            xr = xc.clone().requires_grad_()
            yr = ref(xr)
            yr.backward(gc)
            assert _close(yc, yr)
            assert _close(gxc, xr.grad)
        assert _close(bn.weight.grad, sum(r.weight.grad for r in refs))
        assert _close(bn.bias.grad, sum(r.bias.grad for r in refs))
        assert _close(bn.running_mean, refs[0].running_mean) and _close(bn.running_var, refs[0].running_var)
        assert int(bn.num_batches_tracked) == step + 1
        if running_stats == "per_domain":
            for d in range(1, len(sizes)):
                assert _close(bn.domain_running_mean[d - 1], refs[d].running_mean)
                assert _close(bn.domain_running_var[d - 1], refs[d].running_var)
                assert int(bn.domain_num_batches_tracked[d - 1]) == step + 1
        bn.zero_grad()
        for r in refs:
            r.zero_grad()
    if running_stats == "per_domain" and len(sizes) < bn.num_domains:  # unused domains stay untouched
        assert int(bn.domain_num_batches_tracked[-1]) == 0


def test_clean_mode_keeps_no_other_statistics():
    bn = _layer(running_stats="clean")
    assert {k for k, _ in bn.named_buffers()} == {"running_mean", "running_var", "num_batches_tracked"}
    x = _input(12)
    only_clean = _plain_copy(bn)
    with route_domains(bn, sizes=[4, 4, 4]):
        bn(x)
    only_clean(x[:4])
    assert _close(bn.running_mean, only_clean.running_mean) and _close(bn.running_var, only_clean.running_var)


@pytest.mark.parametrize("running_stats", ["clean", "per_domain"])
def test_index_route_equals_sizes_route_after_permutation(running_stats):
    sizes = [3, 5, 4]
    index = torch.tensor([2, 0, 1, 1, 0, 2, 1, 1, 2, 0, 1, 2])
    perm = torch.argsort(index, stable=True)
    x = _input(12)
    a, b = _layer(running_stats=running_stats), _layer(running_stats=running_stats)
    with route_domains(a, index=index):
        ya = a(x)
    g = torch.randn_like(ya)
    ya.backward(g)
    xs = x.detach()[perm].clone().requires_grad_()
    with route_domains(b, sizes=sizes):
        yb = b(xs)
    yb.backward(g[perm])
    assert _close(ya[perm], yb) and _close(x.grad[perm], xs.grad)
    assert _close(a.weight.grad, b.weight.grad) and _close(a.bias.grad, b.bias.grad)
    for (name, ba), bb in zip(a.named_buffers(), b.buffers(), strict=True):
        assert _close(ba, bb), name
    for layer in (a, b):
        layer.eval()
    with route_domains(a, index=index):
        ea = a(x)
    with route_domains(b, sizes=sizes):
        eb = b(x[perm])
    assert _close(ea[perm], eb)


@pytest.mark.parametrize("route", [{"sizes": [4, 4]}, {"sizes": [3, 5]}, {"index": torch.tensor([1, 0] * 4)}])
@pytest.mark.parametrize("per_domain_eval", [False, True])
def test_gradcheck(route, per_domain_eval):
    running_stats = "per_domain" if per_domain_eval else "clean"
    bn = SelectiveBatchNorm2d(2, num_domains=2, running_stats=running_stats).double()
    if per_domain_eval:  # the running statistics are constants of the gradient
        with torch.no_grad():
            bn.domain_running_mean.uniform_(-1.0, 1.0)
            bn.domain_running_var.uniform_(0.5, 2.0)
        bn.eval()
    x = torch.randn(8, 2, 1, 2, dtype=torch.float64, requires_grad=True)
    w = torch.empty(2, dtype=torch.float64).uniform_(0.5, 2.0).requires_grad_()
    b = torch.empty(2, dtype=torch.float64).uniform_(-1.0, 1.0).requires_grad_()

    def fn(inp, weight, bias):
        with route_domains(bn, **route):
            return torch.func.functional_call(bn, {"weight": weight, "bias": bias}, (inp,))

    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b), fast_mode=True)


def test_per_domain_eval_uses_each_domains_running_stats():
    bn = _layer(running_stats="per_domain")
    with torch.no_grad():
        bn.domain_running_mean.uniform_(-2.0, 2.0)
        bn.domain_running_var.uniform_(0.2, 3.0)
    bn.eval()
    sizes = [2, 3, 1]
    x = _input(6)
    with route_domains(bn, sizes=sizes):
        y = bn(x)
    for d, (xc, yc) in enumerate(zip(x.split(sizes), y.split(sizes), strict=True)):
        assert _close(yc, _plain_copy(bn, d).eval()(xc))
    with route_domains(bn, sizes=[3, 3]):  # another split of the same batch, equal sizes
        y = bn(x)
    assert _close(y[3:], _plain_copy(bn, 1).eval()(x[3:]))
    assert _close(bn(x), _plain_copy(bn, 0).eval()(x))  # outside a route: the clean statistics
    before = copy.deepcopy(bn.state_dict())
    assert all(torch.equal(v, bn.state_dict()[k]) for k, v in before.items())


def test_clean_mode_eval_ignores_route():
    bn = _layer(running_stats="clean").eval()
    x = _input(6)
    with route_domains(bn, sizes=[2, 2, 2]):
        y = bn(x)
    assert _close(y, _plain_copy(bn).eval()(x))


def test_routing_is_restored_after_nesting_and_exceptions():
    model = nn.Sequential(_layer(), nn.ReLU(), _layer())
    layers = [model[0], model[2]]
    x = _input(12)
    with route_domains(model, sizes=[6, 6]):
        model(x)
        with route_domains(model[2], sizes=[4, 4, 4]):
            assert model[0]._route.sizes == (6, 6) and model[2]._route.sizes == (4, 4, 4)
        assert all(layer._route.sizes == (6, 6) for layer in layers)
        with pytest.raises(RuntimeError, match="boom"), route_domains(model, sizes=[12]):
            raise RuntimeError("boom")
        assert all(layer._route.sizes == (6, 6) for layer in layers)
    assert all(layer._route is None for layer in layers)
    with route_domains(model, sizes=[6, 6]):
        copied = copy.deepcopy(model)
    assert copied[0]._route is None and copied[2]._route is None
    ref = copy.deepcopy(model)
    for m in (model, ref):
        m.eval()
    assert torch.equal(model(x), ref(x))


def test_channels_last_input_and_output():
    bn = _layer()
    x = _input(12, h=4, w=5)
    xc = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    ref = copy.deepcopy(bn)
    with route_domains(bn, sizes=[4, 4, 4]):
        y = bn(xc)
    with route_domains(ref, sizes=[4, 4, 4]):
        yr = ref(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert _close(y, yr)
    g = torch.randn_like(yr)
    y.backward(g)
    yr.backward(g)
    assert _close(xc.grad, x.grad) and _close(bn.weight.grad, ref.weight.grad)
    with route_domains(bn, index=torch.tensor([0, 1, 2] * 4)):
        assert bn(xc).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(("sizes", "dtype"), [([4, 4, 4], torch.bfloat16), ([5, 3, 4], torch.bfloat16),
                                             ([4, 4, 4], torch.float16)])
def test_low_precision_autocast(sizes, dtype):
    conv = nn.Conv2d(3, C, 1)
    bn = SelectiveBatchNorm2d(C, 3)
    x = torch.randn(12, 3, 4, 4)
    with torch.autocast("cpu", dtype=dtype), route_domains(bn, sizes=sizes):
        h = conv(x)
        y = bn(h)
    assert h.dtype == y.dtype == dtype
    ref = torch.cat([nn.BatchNorm2d(C)(chunk) for chunk in h.float().split(sizes)])
    assert _close(y, ref, tol=0.05)
    y.float().square().sum().backward()
    assert torch.isfinite(bn.weight.grad).all() and torch.isfinite(conv.weight.grad).all()
    assert bn.running_mean.dtype == torch.float32 and int(bn.num_batches_tracked) == 1


def test_state_dict_round_trips_with_batchnorm2d():
    plain = _plain_copy(_layer())
    with torch.no_grad():
        plain.num_batches_tracked.fill_(7)
    clean = SelectiveBatchNorm2d(C, 3).double()
    clean.load_state_dict(plain.state_dict())  # strict
    assert set(clean.state_dict()) == set(plain.state_dict())
    back = nn.BatchNorm2d(C).double()
    back.load_state_dict(clean.state_dict())  # strict
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in plain.state_dict().items())

    per = SelectiveBatchNorm2d(C, 3, running_stats="per_domain").double()
    per.load_state_dict(plain.state_dict())  # strict: the domain statistics start from the clean ones
    assert torch.equal(per.domain_running_mean, plain.running_mean.expand(2, C))
    assert torch.equal(per.domain_running_var, plain.running_var.expand(2, C))
    assert per.domain_num_batches_tracked.tolist() == [0, 0]
    assert set(per.state_dict()) - set(plain.state_dict()) == {
        "domain_running_mean", "domain_running_var", "domain_num_batches_tracked"}
    again = SelectiveBatchNorm2d(C, 3, running_stats="per_domain").double()
    with torch.no_grad():
        per.domain_running_mean.add_(1)
    again.load_state_dict(per.state_dict())
    assert torch.equal(again.domain_running_mean, per.domain_running_mean)


def _small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6, momentum=None)), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.BatchNorm1d(6), nn.Linear(6, 4),
    ).double()


@pytest.mark.parametrize("running_stats", ["clean", "per_domain"])
def test_convert_train_revert(running_stats):
    net = _small_net()
    net[0].weight.requires_grad_(False)
    net[1].bias.requires_grad_(False)
    source = copy.deepcopy(net)
    model = convert_selective_bn(net, num_domains=3, running_stats=running_stats)
    assert model is net
    assert isinstance(model[1], SelectiveBatchNorm2d) and isinstance(model[3][1], SelectiveBatchNorm2d)
    assert type(model[7]) is nn.BatchNorm1d
    assert model[3][1].momentum is None and model[1].num_domains == 3
    assert model[1].weight is not source[1].weight and torch.equal(model[1].weight, source[1].weight)
    assert model[1].running_mean.data_ptr() != source[1].running_mean.data_ptr()
    assert not model[1].bias.requires_grad and model[1].weight.requires_grad
    assert model[1].weight.dtype == torch.float64
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for step in range(3):
        x = torch.randn(12, 3, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(step))
        with route_domains(model, sizes=[4, 4, 4]):
            loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert int(model[1].num_batches_tracked) == 3
    model.eval()
    x = torch.randn(8, 3, 5, 5, dtype=torch.float64)
    expected = model(x)
    plain = revert_selective_bn(copy.deepcopy(model))
    assert not any(isinstance(m, SelectiveBatchNorm2d) for m in plain.modules())
    assert type(plain[1]) is nn.BatchNorm2d and not plain.training
    assert not plain[1].bias.requires_grad and plain[3][1].momentum is None
    assert _close(plain(x), expected)
    fresh = _small_net()
    fresh.load_state_dict(plain.state_dict())  # strict: plain keys only
    assert _close(fresh.eval()(x), expected)


def test_convert_top_level_shared_and_untouched_norms():
    bn = nn.BatchNorm2d(4).train(False)
    new = convert_selective_bn(bn, 2)
    assert isinstance(new, SelectiveBatchNorm2d) and not new.training
    shared = nn.BatchNorm2d(4)
    net = nn.Sequential(shared, nn.ReLU(), shared, nn.InstanceNorm2d(4), nn.BatchNorm3d(4))
    convert_selective_bn(net, 2)
    assert net[0] is net[2] and isinstance(net[0], SelectiveBatchNorm2d)
    assert type(net[3]) is nn.InstanceNorm2d and type(net[4]) is nn.BatchNorm3d
    assert convert_selective_bn(net, 2)[0] is net[0]  # idempotent
    back = revert_selective_bn(net)
    assert back[0] is back[2] and type(back[0]) is nn.BatchNorm2d
    assert type(revert_selective_bn(new)) is nn.BatchNorm2d


def test_convert_refuses_what_it_cannot_convert():
    with pytest.raises(TypeError, match="SyncBatchNorm"):
        convert_selective_bn(nn.Sequential(nn.SyncBatchNorm(4)), 2)

    class ScaledBatchNorm2d(nn.BatchNorm2d):  # its own forward: not plain BN maths
        def forward(self, x):
            return 2 * super().forward(x)

    with pytest.raises(TypeError, match="ScaledBatchNorm2d.*register_bn_converter"):
        convert_selective_bn(nn.Sequential(ScaledBatchNorm2d(4)), 2)
    with pytest.raises(TypeError, match="unknown options"):
        convert_selective_bn(nn.BatchNorm2d(4), 2, runing_stats="clean")
    with pytest.raises(ValueError, match="num_domains"):
        convert_selective_bn(nn.BatchNorm2d(4), 0)
    with pytest.raises(ValueError, match="revert_selective_bn"):
        convert_selective_bn(convert_selective_bn(nn.BatchNorm2d(4), 2), 3)
    with pytest.raises(ValueError, match="running_stats"):
        SelectiveBatchNorm2d(4, 2, running_stats="each")


def test_bad_routes_raise_clear_errors():
    bn = _layer(num_domains=3)
    x = _input(12)
    with pytest.raises(ValueError, match=r"sum to 10 .* has 12 samples"), route_domains(bn, sizes=[5, 5]):
        bn(x)
    with pytest.raises(ValueError, match="num_domains=3"), route_domains(bn, sizes=[3, 3, 3, 3]):
        bn(x)
    out_of_range = torch.tensor([3] + [0] * 11)
    with pytest.raises(ValueError, match="num_domains=3"), route_domains(bn, index=out_of_range):
        bn(x)
    with pytest.raises(ValueError, match="12 samples"), route_domains(bn, index=torch.zeros(10).long()):
        bn(x)
    single = _input(5, h=1, w=1)
    with pytest.raises(ValueError, match="domain 2 has a single value"), route_domains(bn, sizes=[2, 2, 1]):
        bn(single)
    bn.eval()
    with route_domains(bn, sizes=[2, 2, 1]):  # eval uses running statistics: fine
        bn(single)
    with pytest.raises(ValueError, match="exactly one"):
        with route_domains(bn):
            pass
    with pytest.raises(ValueError, match="exactly one"):
        with route_domains(bn, sizes=[1], index=torch.zeros(1, dtype=torch.long)):
            pass
    with pytest.raises(ValueError, match="non-negative"):
        with route_domains(bn, sizes=[-1, 13]):
            pass
    with pytest.raises(ValueError, match="negative domain id"):
        with route_domains(bn, index=torch.tensor([0, -1])):
            pass
    with pytest.raises(ValueError, match="integer tensor"):
        with route_domains(bn, index=torch.zeros(4)):
            pass
    with pytest.raises(ValueError, match="convert_selective_bn"):
        with route_domains(nn.Sequential(nn.BatchNorm2d(4)), sizes=[2, 2]):
            pass
    assert bn._route is None


def test_options_repr_and_edge_cases():
    bn = SelectiveBatchNorm2d(4, num_domains=3, running_stats="per_domain")
    text = repr(bn)
    assert "num_domains=3" in text and "running_stats='per_domain'" in text
    # affine=False and an empty domain
    plain = SelectiveBatchNorm2d(C, 3, affine=False).double()
    x = _input(8)
    with route_domains(plain, sizes=[4, 0, 4]):
        y = plain(x)
    y.sum().backward()
    ref = nn.BatchNorm2d(C, affine=False).double()
    assert _close(y[:4], ref(x[:4])) and _close(plain.running_var, ref.running_var)
    assert _close(y[4:], nn.BatchNorm2d(C, affine=False).double()(x[4:]))
    assert torch.isfinite(x.grad).all()
    # track_running_stats=False: batch statistics also in eval
    untracked = SelectiveBatchNorm2d(C, 2, track_running_stats=False).double().eval()
    with route_domains(untracked, sizes=[4, 4]):
        y = untracked(x)
    assert _close(y[:4], nn.BatchNorm2d(C, track_running_stats=False).double()(x[:4]))
    with pytest.raises(ValueError, match="track_running_stats"):
        SelectiveBatchNorm2d(C, 2, running_stats="per_domain", track_running_stats=False)


@pytest.mark.slow
def test_torch_compile_equal_sizes_no_graph_break():
    torch._dynamo.reset()
    net = convert_selective_bn(_small_net()[:5], 3, running_stats="per_domain", momentum=None)

    class Routed(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            with route_domains(self.model, sizes=[4, 4, 4]):
                return self.model(x)

    x = torch.randn(12, 3, 5, 5, dtype=torch.float64)
    explained = torch._dynamo.explain(Routed(copy.deepcopy(net)))(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    eager, compiled = Routed(net), torch.compile(Routed(copy.deepcopy(net)), backend="aot_eager")
    for _ in range(2):
        ye, yc = eager(x), compiled(x)
        ye.square().sum().backward()
        yc.square().sum().backward()
        assert _close(ye, yc, 1e-9)
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        assert _close(a.grad, b.grad, 1e-9), name
    for (name, a), b in zip(eager.named_buffers(), compiled.buffers(), strict=True):
        assert _close(a, b, 1e-9), name


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [[3, 5, 2], [4, 4, 4], [5, 0, 7]])
@pytest.mark.parametrize(("running_stats", "momentum"), [("clean", 0.1), ("per_domain", None)])
def test_torch_compile_matches_eager(sizes, running_stats, momentum):
    torch._dynamo.reset()
    eager = _layer(running_stats=running_stats, momentum=momentum)
    traced = copy.deepcopy(eager)

    def run(layer, x):
        with route_domains(layer, sizes=sizes):
            return layer(x)

    compiled = torch.compile(run, backend="aot_eager", fullgraph=True)
    for step in range(2):
        x = _input(sum(sizes), seed=step)
        xt = x.detach().clone().requires_grad_()
        y, yt = run(eager, x), compiled(traced, xt)
        g = torch.randn_like(y)
        y.backward(g)
        yt.backward(g)
        assert _close(y, yt) and _close(x.grad, xt.grad) and _close(eager.weight.grad, traced.weight.grad)
        for (name, a), b in zip(eager.named_buffers(), traced.buffers(), strict=True):
            assert _close(a, b), name
    eager.eval()
    traced.eval()
    x = _input(sum(sizes), seed=5)
    assert _close(run(eager, x), compiled(traced, x))


@pytest.mark.slow
@pytest.mark.parametrize(("running_stats", "training"),
                         [("clean", True), ("per_domain", True), ("per_domain", False), (None, True)])
def test_operator_registration(running_stats, training):
    """torch.library's own checks of the operator: schema and declared mutations, fake tensors, AOT.

    Its gradients come from the autograd.Function around it (test_gradcheck). None: no statistics."""
    bn = _layer(running_stats=running_stats or "clean", momentum=None)
    stats = [getattr(bn, name, None) if running_stats else None for name in selective_bn._STATS]
    x, weight, bias = _input(10).detach(), bn.weight.detach(), bn.bias.detach()
    for sizes in ([4, 6], [3, 0, 7]):
        args = (x, weight, bias, *stats, sizes, training, None, bn.eps)
        torch.library.opcheck(selective_bn._selective_batch_norm, args)


class _TaggedBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d subclass with BatchNorm2d's maths and an extra attribute."""

    def __init__(self, num_features, tag):
        super().__init__(num_features)
        self.tag = tag


def test_plain_subclasses_convert_and_revert_to_their_own_class():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), _TaggedBatchNorm2d(4, tag="x"), nn.ReLU())
    convert_selective_bn(net, 2)
    assert type(net[1]) is SelectiveBatchNorm2d
    with route_domains(net, sizes=[2, 2]):
        net(torch.randn(4, 3, 6, 6))
    net.eval()
    x = torch.randn(2, 3, 6, 6)
    expected = net(x)
    back = revert_selective_bn(net)
    assert type(back[1]) is _TaggedBatchNorm2d and back[1].tag == "x" and not back[1].training
    fresh = nn.Sequential(nn.Conv2d(3, 4, 3), _TaggedBatchNorm2d(4, tag="x"), nn.ReLU()).eval()
    fresh.load_state_dict(back.state_dict(), strict=True)
    assert _close(fresh(x), expected)


def test_register_bn_converter_is_used_for_its_class():
    from auxtrain.nn.convert import register_bn_converter, selective_like

    class Doubled(nn.BatchNorm2d):
        def forward(self, x):
            return 2 * super().forward(x)

    class SelectiveDoubled(SelectiveBatchNorm2d):
        def forward(self, x):
            return 2 * super().forward(x)

    register_bn_converter(Doubled, lambda bn, d, opts: selective_like(bn, d, opts, SelectiveDoubled))
    layer = convert_selective_bn(Doubled(3).eval(), 2)
    assert type(layer) is SelectiveDoubled
    x = torch.randn(2, 3, 4, 4)
    assert _close(layer(x), Doubled(3).eval()(x))
    assert type(revert_selective_bn(layer)) is Doubled


def test_a_model_without_batch_norm_converts_to_itself_and_routes_as_a_no_op():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.ReLU())
    with pytest.warns(UserWarning, match="no BatchNorm2d"):
        assert convert_selective_bn(net, 2) is net
    x = torch.randn(4, 3, 6, 6)
    with route_domains(net, sizes=[2, 2]):
        assert _close(net(x), net(x))
