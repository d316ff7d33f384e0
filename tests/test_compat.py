"""corruptions.compat against imagecorruptions 1.1.2's documented call forms.

imagecorruptions' glass_blur, gaussian_blur and fog crash on current numpy / scikit-image, so the
comparison is of call forms, shapes, dtypes, errors and np.random.seed reproducibility, never of
pixel values (which differ by design: see the module docstring).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from corruptions import compat

imagecorruptions = pytest.importorskip("imagecorruptions")

# Cheap, crash-free in imagecorruptions on current libraries: used where both packages run.
_BOTH_RUN = ("gaussian_noise", "brightness", "contrast", "pixelate")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)


def test_names_and_subsets_are_imagecorruptions():
    for subset in ("common", "validation", "all", "noise", "blur", "weather", "digital"):
        assert compat.get_corruption_names(subset) == imagecorruptions.get_corruption_names(subset), subset
    assert compat.get_corruption_names() == imagecorruptions.get_corruption_names()   # default "common"


@pytest.mark.parametrize("name", _BOTH_RUN)
def test_positional_and_keyword_forms_give_what_imagecorruptions_gives(image, name):
    number = imagecorruptions.get_corruption_names("all").index(name)
    theirs = imagecorruptions.corrupt(image, 3, name)            # positional: image, severity, name
    for call in (lambda: compat.corrupt(image, 3, name),
                 lambda: compat.corrupt(image, severity=3, corruption_name=name),
                 lambda: compat.corrupt(image, corruption_name=name, severity=3),
                 lambda: compat.corrupt(image, 3, None, number),
                 lambda: compat.corrupt(image, corruption_number=number, severity=3)):
        ours = call()
        assert type(ours) is type(theirs) and ours.shape == theirs.shape and ours.dtype == theirs.dtype
    assert compat.corrupt(image, corruption_name=name).shape == image.shape   # severity defaults to 1


def test_every_number_names_the_corruption_imagecorruptions_numbers(image):
    image = image[:32, :32]
    names = imagecorruptions.get_corruption_names("all")
    for number, name in enumerate(names):
        np.random.seed(number)
        by_number = compat.corrupt(image, 2, corruption_number=number)
        np.random.seed(number)
        assert np.array_equal(by_number, compat.corrupt(image, 2, name)), name
        assert by_number.shape == (32, 32, 3) and by_number.dtype == np.uint8


@pytest.mark.parametrize("shape", [(40, 48), (40, 48, 1)])
def test_greyscale_comes_back_as_three_channels_like_imagecorruptions(shape):
    grey = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    theirs = imagecorruptions.corrupt(grey, 1, "brightness")
    ours = compat.corrupt(grey, 1, "brightness")
    assert ours.shape == theirs.shape == (40, 48, 3) and ours.dtype == theirs.dtype == np.uint8
    rgb = np.repeat(grey.reshape(40, 48, 1), 3, axis=-1)
    np.random.seed(0)
    a = compat.corrupt(grey, 4, "gaussian_noise")
    np.random.seed(0)
    assert np.array_equal(a, compat.corrupt(rgb, 4, "gaussian_noise"))   # the same as its RGB copy


def test_np_random_seed_makes_a_call_reproducible(image):
    np.random.seed(7)
    first = compat.corrupt(image, 3, "shot_noise")
    second = compat.corrupt(image, 3, "shot_noise")       # the global RNG moved on: another draw
    np.random.seed(7)
    again = compat.corrupt(image, 3, "shot_noise")
    assert np.array_equal(first, again) and not np.array_equal(first, second)
    state = np.random.get_state()
    gen = np.random.default_rng(5)
    compat.corrupt(image, 3, "shot_noise", generator=gen)  # an explicit generator: the global RNG untouched
    assert np.array_equal(np.random.get_state()[1], state[1])


def test_input_is_not_modified_and_errors_are_attribute_errors_as_in_imagecorruptions(image):
    before = image.copy()
    compat.corrupt(image, 5, "impulse_noise")
    assert np.array_equal(image, before)
    bad = [((image.astype(np.float32), 1, "fog"), "uint8"), ((image, 6, "fog"), "severity"),
           ((image, 1), "corruption_name"), ((image[..., :2], 1, "fog"), "shape"),
           ((image.tolist(), 1, "fog"), "numpy"), ((image, 1, None, 19), "0 to 18")]
    for args, message in bad:
        with pytest.raises(AttributeError, match=message):
            compat.corrupt(*args)
        with pytest.raises(ValueError, match=message):
            compat.corrupt(*args)
    with pytest.raises(AttributeError):
        imagecorruptions.corrupt(image, 6, "fog")             # the same call refused by imagecorruptions


def test_compat_uses_imagenet_c_parameters_whatever_the_size(image):
    """imagecorruptions has one table (ImageNet-C's); corruptions.corrupt picks CIFAR's at 32 px."""
    import corruptions

    small = image[:32, :32]
    gen = np.random.default_rng
    ours = compat.corrupt(small, 1, "gaussian_noise", generator=gen(0))
    assert np.array_equal(ours, corruptions.corrupt(small, "gaussian_noise", 1, generator=gen(0),
                                                    profile="imagenet"))
    assert not np.array_equal(ours, corruptions.corrupt(small, "gaussian_noise", 1, generator=gen(0)))


def test_compat_imports_no_auxtrain():
    code = "import sys, corruptions.compat; assert not any(m.startswith('auxtrain') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
