"""The public API of ``corruptions``: names, dispatch, validation, seeding, profiles, transforms,
plus a smoke test of every registered corruption at every severity."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import corruptions
from corruptions import Corrupt, RandomCorruption, corrupt, get_corruption_names
from corruptions._params import blend_weight, resolve_params
from corruptions._registry import ALL_NAMES, FAMILIES, get_spec, registered_names

BENCHMARK_15 = [
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
]
EXTRA_4 = ["speckle_noise", "gaussian_blur", "spatter", "saturate"]


def natural_images(n=4, height=32, width=32, seed=0):
    """Smooth colour fields with a sharp-edged disc and mild texture: a stand-in for photos."""
    g = torch.Generator().manual_seed(seed)
    low = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(height, width), mode="bicubic")
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    cy, cx = torch.rand(n, 1, 1, generator=g), torch.rand(n, 1, 1, generator=g)
    disc = (((yy - cy) ** 2 + (xx - cx) ** 2) < 0.06).float()[:, None]
    img = low * (1 - disc) + torch.rand(n, 3, 1, 1, generator=g) * disc
    img = img * 0.8 + 0.1 + 0.03 * torch.randn(n, 3, height, width, generator=g)
    return (img.clamp(0, 1) * 255).to(torch.uint8)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- names and registry


def test_names_and_families_are_declared_in_canonical_order():
    assert get_corruption_names() == BENCHMARK_15
    assert get_corruption_names("common") == BENCHMARK_15
    assert get_corruption_names("extra") == EXTRA_4 == get_corruption_names("validation")
    assert get_corruption_names("all") == BENCHMARK_15 + EXTRA_4
    assert get_corruption_names("noise") == ["gaussian_noise", "shot_noise", "impulse_noise"]
    assert get_corruption_names("blur") == ["defocus_blur", "glass_blur", "motion_blur", "zoom_blur"]
    assert get_corruption_names("weather") == ["snow", "frost", "fog", "brightness"]
    assert get_corruption_names("digital") == [
        "contrast",
        "elastic_transform",
        "pixelate",
        "jpeg_compression",
    ]
    families = [n for fam in ("noise", "blur", "weather", "digital") for n in get_corruption_names(fam)]
    assert families == BENCHMARK_15
    with pytest.raises(ValueError, match="subset='fancy'"):
        get_corruption_names("fancy")


def test_every_corruption_is_registered_with_five_severities():
    assert registered_names() == list(ALL_NAMES) == BENCHMARK_15 + EXTRA_4
    for name in ALL_NAMES:
        spec = get_spec(name)
        assert spec.family == (
            "extra" if name in EXTRA_4 else next(f for f, v in FAMILIES.items() if name in v)
        )
        assert spec.benchmark == (name in BENCHMARK_15)
        assert len(spec.cifar) == len(spec.imagenet) == 5


def test_every_kernel_has_the_one_registry_signature():
    """kernel(x, params, generator) named <name>_tensor (torchvision style), no optional generator."""
    import inspect

    for name in ALL_NAMES:
        kernel = get_spec(name).kernel
        assert kernel.__name__ == f"{name}_tensor"
        parameters = list(inspect.signature(kernel).parameters.values())
        assert [p.name for p in parameters] == ["x", "params", "generator"], name
        assert all(p.default is inspect.Parameter.empty for p in parameters), name


def test_get_corruption_names_returns_a_fresh_list():
    names = get_corruption_names("all")
    names.clear()
    assert len(get_corruption_names("all")) == 19


# ----------------------------------------------------------------------------- every corruption

# Corruptions whose reference tables do not make the mean pixel change grow with severity:
MONOTONE_EXCEPTIONS = {
    "saturate": "s1-s2 desaturate (x0.3, x0.1), s3-s5 oversaturate: two regimes, checked separately",
    "elastic_transform": "CIFAR table shrinks the affine jitter (2.6 px -> 1 px) as the elastic part grows",
    "spatter": "water drops at s1-s3, mud at s4-s5",
    "frost": "CIFAR table lowers the image weight at s4 while the frost weight stays .4; random texture",
    # The reference loop (skimage gaussian + pixel sweep) gives 8.57 8.72 8.49 13.25 12.65 on these images:
    "glass_blur": "a larger sigma at the same shuffle (s2->s3, s4->s5) blurs the shuffled pixels back",
}


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_corruption_preserves_shape_dtype_device_and_changes_the_image(name):
    x = natural_images(3)
    changes = []
    for severity in range(1, 6):
        y = corrupt(x, name, severity, generator=seeded(severity))
        assert y.shape == x.shape and y.dtype == torch.uint8 and y.device == x.device
        assert not torch.equal(y, x), f"{name} s{severity} left the images unchanged"
        changes.append((y.float() - x.float()).abs().mean().item())
    xf = x[:1].float() / 255
    yf = corrupt(xf, name, 3, generator=seeded(0))
    assert yf.dtype == torch.float32 and yf.shape == xf.shape and 0 <= yf.min() and yf.max() <= 1
    assert not torch.equal(yf, xf)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_severity_is_monotonic_on_average(name):
    x = natural_images(12, seed=1)
    changes = [
        (corrupt(x, name, s, generator=seeded(10 + s)).float() - x.float()).abs().mean().item()
        for s in range(1, 6)
    ]
    if name == "saturate":
        assert changes[0] < changes[1] and changes[2] < changes[3] < changes[4], changes
        return
    if name in MONOTONE_EXCEPTIONS:
        pytest.skip(MONOTONE_EXCEPTIONS[name])
    slack = 0.1 * (max(changes) - min(changes))  # random draws: allow a small dip between neighbours
    assert changes[4] > changes[0], changes
    assert all(b >= a - slack for a, b in zip(changes, changes[1:], strict=False)), changes


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_corruption_handles_non_square_images_and_all_profiles(name):
    x = natural_images(2, 24, 40, seed=2)
    for profile in ("auto", "cifar", "imagenet"):
        y = corrupt(x, name, 5, generator=seeded(0), profile=profile)
        assert y.shape == x.shape and y.dtype == torch.uint8
    y = corrupt(natural_images(1, 96, 72, seed=3), name, 2, generator=seeded(0))
    assert y.shape == (1, 3, 96, 72)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_same_seed_same_output_for_every_corruption(name):
    x = natural_images(2, seed=4)
    a = corrupt(x, name, 4, generator=seeded(7))
    b = corrupt(x, name, 4, generator=seeded(7))
    assert torch.equal(a, b)
    if not get_spec(name).deterministic:
        c = corrupt(x, name, 4, generator=seeded(8))
        assert not torch.equal(a, c)


# ----------------------------------------------------------------------------- dispatch


def test_numpy_path_equals_tensor_path():
    x = natural_images(1, 40, 48)
    image = x[0].permute(1, 2, 0).numpy()
    for name in ("gaussian_noise", "shot_noise", "contrast", "jpeg_compression"):
        out_np = corrupt(image, name, 3, generator=np.random.default_rng(5))
        out_t = corrupt(x, name, 3, generator=np.random.default_rng(5))
        assert isinstance(out_np, np.ndarray) and out_np.dtype == np.uint8 and out_np.shape == image.shape
        np.testing.assert_array_equal(out_np, out_t[0].permute(1, 2, 0).numpy())
        # a torch generator works on the numpy path too
        np.testing.assert_array_equal(
            corrupt(image, name, 3, generator=seeded(1)),
            corrupt(x, name, 3, generator=seeded(1))[0].permute(1, 2, 0),
        )


def test_numpy_batches_unbatched_tensors_and_pil_images():
    x = natural_images(3)
    batch_np = x.permute(0, 2, 3, 1).numpy()
    out = corrupt(batch_np, "speckle_noise", 2, generator=seeded(3))
    np.testing.assert_array_equal(
        out, corrupt(x, "speckle_noise", 2, generator=seeded(3)).permute(0, 2, 3, 1)
    )
    single = corrupt(x[0], "shot_noise", 2, generator=seeded(3))
    assert single.shape == (3, 32, 32)
    assert torch.equal(single, corrupt(x[:1], "shot_noise", 2, generator=seeded(3))[0])
    Image = pytest.importorskip("PIL.Image")
    pil = Image.fromarray(batch_np[0])
    out_pil = corrupt(pil, "contrast", 4)
    assert isinstance(out_pil, Image.Image) and out_pil.size == pil.size
    np.testing.assert_array_equal(np.asarray(out_pil), corrupt(batch_np[0], "contrast", 4))


def test_float_inputs_keep_their_dtype_and_match_the_uint8_path_before_quantisation():
    x = natural_images(2)
    for dtype in (torch.float32, torch.float64, torch.float16):
        xf = x.to(dtype) / 255
        y = corrupt(xf, "contrast", 3)
        assert y.dtype == dtype
    y32 = corrupt(x.float() / 255, "contrast", 3)
    y8 = corrupt(x, "contrast", 3)
    assert torch.equal((y32 * 255 + 1e-3).floor().to(torch.uint8), y8)


def test_input_is_never_modified():
    x = natural_images(2)
    xf = x.float() / 255
    x0, xf0 = x.clone(), xf.clone()
    for name in ALL_NAMES:
        corrupt(x, name, 5, generator=seeded(0))
        corrupt(xf, name, 5, generator=seeded(0))
    assert torch.equal(x, x0) and torch.equal(xf, xf0)


def test_empty_batch():
    x = torch.zeros(0, 3, 32, 32, dtype=torch.uint8)
    assert corrupt(x, "fog", 3).shape == (0, 3, 32, 32)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "image, kwargs, error, match",
    [
        (torch.zeros(2, 3, 32, 32, dtype=torch.int32), {}, TypeError, "dtype torch.int32"),
        (torch.zeros(2, 4, 32, 32, dtype=torch.uint8), {}, ValueError, r"\(2, 4, 32, 32\)"),
        (torch.zeros(32, 32, dtype=torch.uint8), {}, ValueError, "shape"),
        (torch.zeros(2, 3, 7, 32, dtype=torch.uint8), {}, ValueError, "7x32 pixels"),
        (torch.full((1, 3, 32, 32), 1.5), {}, ValueError, "max 1.5"),
        (torch.full((1, 3, 32, 32), -0.1), {}, ValueError, "in \\[0, 1\\]"),
        (torch.full((1, 3, 32, 32), float("nan")), {}, ValueError, "in \\[0, 1\\]"),
        (np.zeros((32, 32, 3), np.float32), {}, TypeError, "float32"),
        (np.zeros((32, 32), np.uint8), {}, ValueError, r"\(32, 32\)"),
        (np.zeros((32, 32, 4), np.uint8), {}, ValueError, r"\(H, W, 3\)"),
        (np.zeros((6, 32, 3), np.uint8), {}, ValueError, "6x32 pixels"),
        ([[0, 1]], {}, TypeError, "builtins.list"),
        (
            torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
            {"corruption_name": "fogg"},
            ValueError,
            "fogg.*gaussian_noise",
        ),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), {"corruption_name": 3}, TypeError, "corruption_name"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), {"severity": 0}, ValueError, "severity=0"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), {"severity": 6}, ValueError, "severity=6"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), {"severity": 2.0}, TypeError, "severity"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), {"severity": True}, TypeError, "severity"),
        (
            torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
            {"severity": torch.tensor([1, 6])},
            ValueError,
            r"\[6\]",
        ),
        (
            torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
            {"severity": [1, 2, 3]},
            ValueError,
            "one severity per image",
        ),
        (
            torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
            {"severity": torch.tensor([1.0, 2.0])},
            TypeError,
            "integers",
        ),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), {"generator": 0}, TypeError, "generator"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), {"profile": "tiny"}, ValueError, "profile='tiny'"),
    ],
)
def test_bad_input_raises_a_named_error(image, kwargs, error, match):
    kwargs = {"corruption_name": "contrast", **kwargs}
    with pytest.raises(error, match=match):
        corrupt(image, **kwargs)


# ----------------------------------------------------------------------------- seeding


def test_seeding_never_touches_the_global_rngs():
    x = natural_images(2)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    a = corrupt(x, "gaussian_noise", 3)
    b = corrupt(x, "gaussian_noise", 3)
    assert not torch.equal(a, b)  # generator=None: a fresh random seed per call
    corrupt(x, "impulse_noise", 3, generator=np.random.default_rng(0))
    assert torch.equal(torch.get_rng_state(), torch_state)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)


def test_numpy_generator_is_deterministic_and_advances():
    x = natural_images(2)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    first = corrupt(x, "gaussian_noise", 2, generator=rng_a)
    assert torch.equal(first, corrupt(x, "gaussian_noise", 2, generator=rng_b))
    assert not torch.equal(first, corrupt(x, "gaussian_noise", 2, generator=rng_a))


def test_per_image_severity_groups_the_batch_in_ascending_order():
    x = natural_images(5)
    severity = torch.tensor([3, 1, 3, 5, 1])
    out = corrupt(x, "gaussian_noise", severity, generator=seeded(2))
    g = seeded(2)
    expected = torch.empty_like(x)
    for s in (1, 3, 5):
        idx = (severity == s).nonzero().squeeze(1)
        expected[idx] = corrupt(x[idx], "gaussian_noise", s, generator=g)
    assert torch.equal(out, expected)
    # lists and numpy arrays work too; deterministic corruptions equal the per-severity calls
    out_c = corrupt(x, "contrast", [3, 1, 3, 5, 1])
    for i, s in enumerate([3, 1, 3, 5, 1]):
        assert torch.equal(out_c[i], corrupt(x[i : i + 1], "contrast", s)[0])
    assert torch.equal(corrupt(x, "contrast", np.array([2] * 5)), corrupt(x, "contrast", 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_and_cuda_give_the_same_output_for_the_same_cpu_generator():
    x = natural_images(3)
    for name in ALL_NAMES:
        cpu = corrupt(x, name, 3, generator=seeded(0))
        gpu = corrupt(x.cuda(), name, 3, generator=seeded(0))
        assert gpu.device.type == "cuda"
        assert (cpu.int() - gpu.cpu().int()).abs().max() <= 1, name


# ----------------------------------------------------------------------------- profiles


def test_profile_tables_at_32_and_224_px_and_interpolation_between():
    assert resolve_params("gaussian_noise", 5, 32, 32) == (0.10,)
    assert resolve_params("gaussian_noise", 5, 16, 16) == (0.10,)
    assert resolve_params("gaussian_noise", 5, 224, 224) == (0.38,)
    assert resolve_params("gaussian_noise", 5, 500, 300) == (0.38,)
    assert resolve_params("gaussian_noise", 5, 224, 224, "cifar") == (0.10,)
    assert resolve_params("gaussian_noise", 5, 32, 32, "imagenet") == (0.38,)
    mid = resolve_params("gaussian_noise", 5, 85, 85)[0]
    assert 0.10 < mid < 0.38
    t = blend_weight(85, 85)
    assert mid == pytest.approx(0.10 ** (1 - t) * 0.38**t)  # geometric interpolation
    # the size is sqrt(H * W): a 64 x 128 image uses the same parameters as a 90.5 px square
    assert resolve_params("contrast", 2, 64, 128) == resolve_params("contrast", 2, 128, 64)
    assert blend_weight(64, 128) == pytest.approx(blend_weight(90, 91), abs=0.01)
    # integer parameters are rounded, zero offsets stay zero (linear)
    (quality,) = resolve_params("jpeg_compression", 3, 100, 100)
    assert isinstance(quality, int) and 15 < quality < 58
    assert resolve_params("saturate", 3, 100, 100)[1] == 0
    assert resolve_params("saturate", 3, 100, 100)[0] == pytest.approx(
        1.5 ** (1 - blend_weight(100, 100)) * 2 ** blend_weight(100, 100)
    )


def test_profile_changes_the_output():
    x = natural_images(2, 64, 64)
    cifar = corrupt(x, "contrast", 4, profile="cifar")
    imagenet = corrupt(x, "contrast", 4, profile="imagenet")
    auto = corrupt(x, "contrast", 4)
    spread = lambda y: y.float().std().item()  # noqa: E731
    assert spread(imagenet) < spread(auto) < spread(cifar)


# ----------------------------------------------------------------------------- transforms


def test_corrupt_transform_equals_the_function():
    x = natural_images(2)
    t = Corrupt("shot_noise", 4, generator=seeded(1))
    assert torch.equal(t(x), corrupt(x, "shot_noise", 4, generator=seeded(1)))
    assert "shot_noise" in repr(t)
    with pytest.raises(ValueError, match="name='snowy'"):
        Corrupt("snowy")
    with pytest.raises(ValueError, match="severity=6"):
        Corrupt("snow", 6)
    with pytest.raises(ValueError, match="a subset"):
        Corrupt("noise")


def test_random_corruption_is_seeded_and_per_image():
    x = natural_images(16)
    a = RandomCorruption("all", generator=seeded(4))(x)
    b = RandomCorruption("all", generator=seeded(4))(x)
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == x.dtype
    assert (a != x).flatten(1).any(1).all()  # every image corrupted
    assert torch.equal(RandomCorruption("noise", p=0.0)(x), x)
    image = x[0].permute(1, 2, 0).numpy()
    out = RandomCorruption(["contrast"], severities=[2])(image)
    np.testing.assert_array_equal(out, corrupt(image, "contrast", 2))
    with pytest.raises(ValueError, match="names"):
        RandomCorruption(["contrast", "blurry"])
    with pytest.raises(ValueError, match="p=2"):
        RandomCorruption(p=2)


def test_package_reexports():
    assert set(corruptions.__all__) == {
        "corrupt",
        "get_corruption_names",
        "resolve_names",
        "family_of",
        "canonical_order",
        "parse_severities",
        "make_c",
        "Corrupt",
        "RandomCorruption",
    }


def test_resolve_names_accepts_every_spec_form_in_canonical_order():
    assert corruptions.resolve_names("fog,noise") == ["gaussian_noise", "shot_noise", "impulse_noise", "fog"]
    assert corruptions.resolve_names(["common"]) == get_corruption_names("common")
    assert corruptions.resolve_names(None) == get_corruption_names("all")
    assert corruptions.resolve_names("extra, snow") == ["snow", *get_corruption_names("extra")]
    with pytest.raises(ValueError, match=r"--x='fgo' is neither.*subsets common.*gaussian_noise"):
        corruptions.resolve_names("noise,fgo", what="--x")
    with pytest.raises(ValueError, match="names no corruption"):
        corruptions.resolve_names(" , ")


def test_family_of_covers_every_name():
    assert [corruptions.family_of(n) for n in ("shot_noise", "zoom_blur", "fog", "pixelate", "spatter")] == [
        "noise", "blur", "weather", "digital", "extra"]
    with pytest.raises(ValueError, match="not a corruption"):
        corruptions.family_of("noise")
