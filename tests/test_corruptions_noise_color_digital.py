"""Noise, colour and digital kernels against the published formulas.

Deterministic corruptions are compared with small float64 numpy references written from the
hendrycks/robustness formulas (clip to [0, 1], x 255, truncate like np.uint8); pixelate and JPEG
with PIL, which the references call. Random ones are checked by their moments, and at 224 px
against imagecorruptions (ImageNet-C parameters) on pixel statistics.
"""

import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from corruptions import corrupt
from corruptions._registry import _CHUNK

CIFAR = {
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
    "saturate": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],
    "jpeg_compression": [80, 65, 58, 50, 40],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
    "speckle_noise": [0.06, 0.10, 0.12, 0.16, 0.20],
}
IMAGENET = {
    "contrast": [0.4, 0.3, 0.2, 0.1, 0.05],
    "brightness": [0.1, 0.2, 0.3, 0.4, 0.5],
    "saturate": [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)],
    "jpeg_compression": [25, 18, 15, 10, 7],
    "pixelate": [0.6, 0.5, 0.4, 0.3, 0.25],
}


def test_images(n=6, height=32, width=32, seed=0):
    """Uint8 (n, H, W, 3): smooth colour fields, pure noise, and grey / black / white patches."""
    g = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(height, width), mode="bicubic")
    smooth = smooth + 0.05 * torch.randn(n, 3, height, width, generator=g)
    images = (smooth.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy().copy()
    noise_width = width if n > 1 else width // 2
    images[0, :, :noise_width] = np.random.default_rng(seed).integers(0, 256, (height, noise_width, 3))
    images[-1, :4] = 0  # black rows: V = 0
    images[-1, 4:8] = 128  # grey rows: S = 0, hue 0
    images[-1, 8:10] = 255
    return images


test_images.__test__ = False  # a fixture builder, not a test


# ----------------------------------------------------------------------------- numpy references


def rgb2hsv(rgb):
    """Hexcone RGB -> HSV as scikit-image defines it (S = 0 and H = 0 where max == min)."""
    v = rgb.max(-1)
    delta = v - rgb.min(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(delta > 0, delta / np.where(v > 0, v, 1), 0.0)
        r, g, b = (rgb[..., i] for i in range(3))
        safe = np.where(delta > 0, delta, 1)
        h = np.where(v == r, (g - b) / safe, np.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = np.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    return np.stack([h, s, v], -1)


def hsv2rgb(hsv):
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    hi = np.floor(h * 6)
    f = h * 6 - hi
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    hi = hi.astype(int) % 6
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    return np.stack([np.choose(hi, [c[k] for c in choices]) for k in range(3)], -1)


def to_uint8(x, guard=0.0):
    """The references' final cast: clip, then truncate (np.uint8); ``guard`` absorbs round-off."""
    return np.uint8(np.clip(x, 0, 1) * 255 + guard)


def contrast_ref(img, c, guard=0.0):
    x = img / 255.0
    means = x.mean(axis=(0, 1), keepdims=True)
    return to_uint8((x - means) * c + means, guard)


def brightness_ref(img, c, guard=0.0):
    hsv = rgb2hsv(img / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return to_uint8(hsv2rgb(hsv), guard)


def saturate_ref(img, c, guard=0.0):
    hsv = rgb2hsv(img / 255.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
    return to_uint8(hsv2rgb(hsv), guard)


def pil_pixelate(img, c, up):
    from PIL import Image

    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((int(w * c), int(h * c)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BOX if up == "box" else Image.NEAREST))


def pil_jpeg(img, quality):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())))


def test_numpy_hsv_reference_matches_scikit_image():
    color = pytest.importorskip("skimage.color")
    x = test_images(3) / 255.0
    np.testing.assert_allclose(rgb2hsv(x), color.rgb2hsv(x), atol=1e-12)
    np.testing.assert_allclose(hsv2rgb(rgb2hsv(x)), x, atol=1e-12)


# ----------------------------------------------------------------------------- deterministic


@pytest.mark.parametrize(
    "profile, size", [("cifar", (32, 32)), ("imagenet", (64, 48)), ("imagenet", (224, 224))]
)
@pytest.mark.parametrize(
    "name, reference",
    [("contrast", contrast_ref), ("brightness", brightness_ref), ("saturate", saturate_ref)],
)
def test_colour_corruptions_match_the_formulas(name, reference, profile, size):
    """Bit-exact with the formulas; at most +1 against their literal float64 evaluation.

    The references' HSV round trip turns exact results such as 1.0 * 255 into 254.99999999999997,
    which np.uint8 truncates to 254 (up to ~5% of values, e.g. every pixel whose V clips at 1).
    Our closed forms keep the exact value, so against the literal code we may be 1 level above,
    never below. With that float64 round-off guarded (+1e-6 before truncating) we are identical
    except for rare exact results within float32 round-off (1e-4 grey levels) below an integer.
    """
    images = test_images(6 if size[0] < 100 else 1, *size)
    table = CIFAR if profile == "cifar" else IMAGENET
    for severity, c in enumerate(table[name], 1):
        ours = corrupt(images, name, severity, profile=profile).astype(int)
        literal = np.stack([reference(img, c) for img in images])
        diff = ours - literal
        assert diff.min() >= 0 and diff.max() <= 1, (name, severity, diff.min(), diff.max())
        guarded = np.stack([reference(img, c, guard=1e-6) for img in images])
        assert np.abs(ours - guarded).max() <= 1 and (ours != guarded).mean() < 0.001


@pytest.mark.parametrize("profile, up", [("cifar", "box"), ("imagenet", "nearest")])
@pytest.mark.parametrize("size", [(32, 32), (50, 70), (150, 130)])  # the last: PIL's own resize on CPU
def test_pixelate_is_bit_exact_with_pil(profile, up, size):
    images = test_images(4, *size)
    table = CIFAR if profile == "cifar" else IMAGENET
    for severity, c in enumerate(table["pixelate"], 1):
        ours = corrupt(images, "pixelate", severity, profile=profile)
        ref = np.stack([pil_pixelate(img, c, up) for img in images])
        np.testing.assert_array_equal(ours, ref)


def test_pixelate_port_and_pil_planes_give_the_same_bytes(monkeypatch):
    """Large CPU batches are pixelated by PIL per plane, small ones by the tensor port: same bytes."""
    from corruptions import digital

    x = torch.randint(0, 256, (5, 3, 37, 61), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    for profile in ("cifar", "imagenet"):
        for severity in (1, 3, 5):
            monkeypatch.setattr(digital, "_PIXELATE_PIL_AREA", 10**9)
            port = corrupt(x, "pixelate", severity, profile=profile)
            monkeypatch.setattr(digital, "_PIXELATE_PIL_AREA", 0)
            assert torch.equal(corrupt(x, "pixelate", severity, profile=profile), port)


@pytest.mark.parametrize("profile, size", [("cifar", (32, 32)), ("imagenet", (40, 56))])
def test_jpeg_matches_pil_within_one_grey_level(profile, size):
    """Bound: |ours - PIL| <= 1 grey level on < 1% of values.

    Both sides run libjpeg(-turbo) with the standard tables scaled by the same quality, 4:2:0
    chroma subsampling and the ISLOW DCT, so here the results are bit-identical; the bound leaves
    room for builds whose SIMD colour conversion / upsampling rounds differently.
    """
    images = test_images(6, *size)
    table = CIFAR if profile == "cifar" else IMAGENET
    for severity, q in enumerate(table["jpeg_compression"], 1):
        ours = corrupt(images, "jpeg_compression", severity, profile=profile)
        ref = np.stack([pil_jpeg(img, q) for img in images])
        diff = np.abs(ours.astype(int) - ref)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (severity, diff.max(), (diff > 0).mean())


def test_clip_then_truncate_like_np_uint8():
    # contrast 0.75 around a mean of 0.5 turns 1/255 into 0.5 - (0.5 - 1/255) * .75 = 0.12794 * 255 = 32.6...
    img = np.zeros((8, 8, 3), np.uint8)
    img[:4] = 1
    img[4:] = 254
    ours = corrupt(img, "contrast", 1, profile="cifar")
    np.testing.assert_array_equal(ours, contrast_ref(img, 0.75))
    assert ours[0, 0, 0] == int(np.floor(((1 / 255 - 127.5 / 255) * 0.75 + 127.5 / 255) * 255))


# ----------------------------------------------------------------------------- random: moments


def grey(value, n=32, size=32):
    return torch.full((n, 3, size, size), float(value))


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_gaussian_noise_moments(severity):
    c = CIFAR["gaussian_noise"][severity - 1]
    x = grey(0.5)
    d = corrupt(x, "gaussian_noise", severity, generator=torch.Generator().manual_seed(0)) - x
    assert abs(d.mean().item()) < 0.02 * c
    assert d.std().item() == pytest.approx(c, rel=0.02)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_shot_noise_is_poisson(severity):
    c = CIFAR["shot_noise"][severity - 1]
    x = grey(0.3)
    y = corrupt(x, "shot_noise", severity, generator=torch.Generator().manual_seed(0))
    counts = y * c
    torch.testing.assert_close(counts, counts.round(), atol=1e-3, rtol=0)  # integer photon counts / c
    assert y.mean().item() == pytest.approx(0.3, rel=0.01)
    assert y.var().item() == pytest.approx(0.3 / c, rel=0.03)  # Poisson: variance = mean


def test_shot_noise_is_the_same_on_any_thread_count_and_its_chunks_are_independent():
    """Large CPU batches are drawn in fixed chunks on several threads (corruptions._registry._draw)."""
    x = torch.full((6, 3, 128, 128), 0.3)  # 294,912 rates: several chunks
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            generator = torch.Generator().manual_seed(3)
            outs.append(corrupt(x, "shot_noise", 5, generator=generator, profile="cifar"))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(outs[0], outs[1])
    flat = outs[0].reshape(-1)
    assert not torch.equal(flat[:1000], flat[_CHUNK:_CHUNK + 1000])  # each chunk its own stream
    assert flat.var().item() == pytest.approx(0.3 / CIFAR["shot_noise"][4], rel=0.02)


@pytest.mark.parametrize("severity", [1, 5])
def test_impulse_noise_fraction_and_salt_pepper_balance(severity):
    c = CIFAR["impulse_noise"][severity - 1]
    x = grey(0.5, n=64)
    y = corrupt(x, "impulse_noise", severity, generator=torch.Generator().manual_seed(0))
    salt, pepper = (y == 1).float().mean().item(), (y == 0).float().mean().item()
    assert salt + pepper == pytest.approx(c, rel=0.05)
    assert salt == pytest.approx(pepper, rel=0.1)
    assert torch.all((y == 0) | (y == 1) | (y == 0.5))
    # per value and channel independently: channels of one pixel are not hit together
    hit = (y != 0.5).float()
    assert (hit.prod(1).mean().item()) < 3 * c**3 + 1e-4


@pytest.mark.parametrize("severity", [1, 5])
def test_speckle_noise_is_multiplicative(severity):
    c = CIFAR["speckle_noise"][severity - 1]
    for level in (0.2, 0.6):
        x = grey(level)
        rel = (corrupt(x, "speckle_noise", severity, generator=torch.Generator().manual_seed(1)) - x) / level
        assert abs(rel.mean().item()) < 0.02 * c
        assert rel.std().item() == pytest.approx(c, rel=0.02)


def test_noise_uses_independent_draws_per_image():
    x = grey(0.5, n=2)
    y = corrupt(x, "gaussian_noise", 3, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(y[0], y[1])


# ----------------------------------------------------------------------------- vs imagecorruptions


@pytest.fixture(scope="module")
def imagecorruptions():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("imagecorruptions")


@pytest.mark.parametrize("name", ["contrast", "brightness", "saturate", "pixelate", "jpeg_compression"])
def test_deterministic_ones_match_imagecorruptions_at_224(imagecorruptions, name):
    images = test_images(2, 224, 224)
    for severity in (1, 3, 5):
        ours = corrupt(images, name, severity)  # auto profile = ImageNet-C tables at 224 px
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = np.stack(
                [imagecorruptions.corrupt(img, severity, corruption_name=name) for img in images]
            )
        diff = ours.astype(int) - theirs
        if name == "jpeg_compression":  # same bound as against PIL above
            assert np.abs(diff).max() <= 1 and (diff != 0).mean() < 0.01, (severity, np.abs(diff).max())
        else:  # exact, except +1 where their float64 round-off truncates an exact integer down
            assert diff.min() >= 0 and diff.max() <= 1, (name, severity, diff.min(), diff.max())
            assert (diff != 0).mean() < 0.1


def assert_same_mean(a, b, what):
    """The means of two large samples agree within 4 standard errors."""
    se = np.sqrt(a.var() / a.size + b.var() / b.size)
    assert abs(a.mean() - b.mean()) < 4 * se + 1e-9, (what, a.mean(), b.mean(), se)


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"])
def test_noise_statistics_match_imagecorruptions_at_224(imagecorruptions, name):
    """Same formula and parameters: the per-pixel change has the same mean, mean |.| and mean square."""
    images = test_images(2, 224, 224, seed=5)
    state = np.random.get_state()
    np.random.seed(0)  # imagecorruptions draws from numpy's global RNG
    try:
        for severity in (1, 3, 5):
            ours = corrupt(images, name, severity, generator=torch.Generator().manual_seed(severity))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = np.stack(
                    [imagecorruptions.corrupt(img, severity, corruption_name=name) for img in images]
                )
            d_ours, d_theirs = ours.astype(float) - images, theirs.astype(float) - images
            assert_same_mean(d_ours, d_theirs, (name, severity, "change"))
            assert_same_mean(np.abs(d_ours), np.abs(d_theirs), (name, severity, "|change|"))
            assert_same_mean(d_ours**2, d_theirs**2, (name, severity, "change^2"))
            assert np.abs(d_ours).mean() > 0.5
    finally:
        np.random.set_state(state)
