"""AugMix views, the authors' four views, and the augmix mode / training-view branches on shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from auxtrain.data.augmix import OPERATIONS, _apply_step, augmix, augmix_views
from auxtrain.data.authors_views import AUTHORS_VIEWS


def _smooth_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 3, size, size, generator=g) * 255
    return F.avg_pool2d(noise, 5, 1, 2).to(torch.uint8)


def test_operations_are_the_papers_without_those_overlapping_the_test_corruptions():
    from torchvision.transforms.v2 import AugMix

    # torchvision's all_ops=False space is the same nine operations (names CamelCase there).
    partial = {name.lower() for name in AugMix._PARTIAL_AUGMENTATION_SPACE}
    assert {op.replace("_", "") for op in OPERATIONS} == partial
    assert not {"color", "contrast", "brightness", "sharpness"} & set(OPERATIONS)


@pytest.mark.parametrize(("op", "reference", "inner_max"), [
    ("translate_x", lambda im: im.transform((32, 32), Image.AFFINE, (1, 0, 3, 0, 1, 0), Image.BILINEAR), 0),
    ("translate_y", lambda im: im.transform((32, 32), Image.AFFINE, (1, 0, 0, 0, 1, 3), Image.BILINEAR), 0),
    ("rotate", lambda im: im.rotate(9, resample=Image.BILINEAR), 1),
    ("solarize", lambda im: ImageOps.solarize(im, 256 - 76), 0),
    ("posterize", lambda im: ImageOps.posterize(im, 3), 0),
    ("equalize", ImageOps.equalize, 0),
    ("autocontrast", ImageOps.autocontrast, 1),
])
def test_each_operation_matches_the_papers_pil_operation(op, reference, inner_max):
    # Level 3 (the top of severity 3) and sign +1: rotate 9 degrees, translate 3 px, solarize at 180.
    x = _smooth_images(1)
    out = x.clone()
    _apply_step(out, torch.tensor([OPERATIONS.index(op)]), torch.tensor([3.0]), torch.tensor([1.0]))
    ours = out[0].permute(1, 2, 0).numpy().astype(int)
    theirs = np.asarray(reference(Image.fromarray(x[0].permute(1, 2, 0).numpy()))).astype(int)
    assert np.abs(ours - theirs)[2:-2, 2:-2].max() <= inner_max  # borders: PIL's edge handling differs


def test_augmix_is_seeded_per_image_and_leaves_the_global_rng_alone():
    images = _smooth_images(16)
    state = torch.get_rng_state()
    views = augmix_views(images, torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    again = augmix_views(images, torch.Generator().manual_seed(3))
    assert len(views) == 2 and all(torch.equal(a, b) for a, b in zip(views, again, strict=True))
    assert all(v.shape == images.shape and v.dtype == torch.uint8 for v in views)
    assert not torch.equal(views[0], views[1])
    # Per-image chains: 16 copies of one image get 16 different views (torchvision's AugMix would
    # apply one chain to the whole batch).
    same = augmix(images[:1].repeat(16, 1, 1, 1), torch.Generator().manual_seed(4))
    assert len({bytes(v.numpy()) for v in same}) == 16
    as_float = augmix(images.float() / 255, torch.Generator().manual_seed(3))
    assert as_float.dtype == torch.float32 and 0 <= as_float.min() and as_float.max() <= 1


def test_authors_rotate_is_torchvisions_random_rotation_30():
    import torchvision.transforms.functional as TF

    images = _smooth_images(4)
    out = AUTHORS_VIEWS["authors_rotate"](images, torch.Generator().manual_seed(0))
    angles = torch.rand(4, generator=torch.Generator().manual_seed(0)) * 60 - 30
    for image, rotated, angle in zip(images, out, angles, strict=True):
        expected = TF.rotate(Image.fromarray(image.permute(1, 2, 0).numpy()), float(angle))
        assert np.array_equal(rotated.permute(1, 2, 0).numpy(), np.asarray(expected))


def test_authors_noise_is_clipped_not_wrapped_and_blur_is_pils_gaussian_blur():
    from PIL import ImageFilter

    g = torch.Generator().manual_seed(0)
    white = torch.full((2, 3, 32, 32), 250, dtype=torch.uint8)
    black = torch.zeros((2, 3, 32, 32), dtype=torch.uint8)
    grey = torch.full((2, 3, 32, 32), 128, dtype=torch.uint8)
    assert AUTHORS_VIEWS["authors_noise"](white, g).float().mean() > 230  # wrapped would be ~150
    assert AUTHORS_VIEWS["authors_noise"](black, g).float().mean() < 20
    noisy = AUTHORS_VIEWS["authors_noise"](grey, g).float() - 128
    assert abs(noisy.std().item() - 20) < 1 and abs(noisy.mean().item()) < 1
    x = _smooth_images(1)
    ours = AUTHORS_VIEWS["authors_blur"](x, g)[0].permute(1, 2, 0).numpy().astype(int)
    pil = Image.fromarray(x[0].permute(1, 2, 0).numpy()).filter(ImageFilter.GaussianBlur(1.0))
    assert np.abs(ours - np.asarray(pil).astype(int)).mean() < 1.0


def test_authors_jitter_scales_brightness_contrast_saturation_per_image():
    grey = torch.full((64, 3, 8, 8), 100, dtype=torch.uint8)  # contrast and saturation leave grey alone
    out = AUTHORS_VIEWS["authors_jitter"](grey, torch.Generator().manual_seed(0)).float()
    levels = out[:, 0, 0, 0]
    assert torch.equal(out, levels.view(-1, 1, 1, 1).expand_as(out))  # still flat and grey
    assert 50 <= levels.min() and levels.max() <= 150 and levels.std() > 15  # 100 x [0.5, 1.5]


TINY = {"dataset": "shapes", "train_size": 64, "test_size": 16, "batch_size": 32, "progress": False,
        "model": "resnet20", "epochs": 1, "eval": False}


@pytest.mark.parametrize(("options", "heads", "term"), [
    ({"mode": "augmix"}, 0, "jsd"),
    ({"corruptions": "augmix"}, 1, "aux_ce"),
    ({"corruptions": "authors,augmix"}, 2, "aux_ce"),
])
def test_augmix_mode_and_training_view_branches_run_on_shapes(tmp_path, options, heads, term):
    from auxtrain.training import TrainConfig, fit

    result = fit(TrainConfig(**TINY, out=str(tmp_path / "run"), **options))
    row = result.metrics[-1]
    assert np.isfinite(row["loss"]) and row[term] > 0
    assert ("jsd" in row) == (options.get("mode") == "augmix")
    import yaml

    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert len(config["branches"]) == (2 if options.get("mode") == "augmix" else heads)


def test_augmix_mode_refuses_corruption_branches():
    from auxtrain.train_config import TrainConfig

    assert TrainConfig(mode="augmix").resolved().corruptions == "none"
    assert TrainConfig().resolved().corruptions == "noise,blur"
    with pytest.raises(ValueError, match="--mode augmix trains the main head on two AugMix views"):
        TrainConfig(mode="augmix", corruptions="noise").resolved()
    with pytest.raises(ValueError, match="--companions is not supported with --mode augmix"):
        TrainConfig(mode="augmix", companions="layer1").resolved()
    with pytest.raises(ValueError, match="--jsd-weight"):
        TrainConfig(mode="augmix", jsd_weight=-1.0).resolved()


def test_augmix_mode_ctrl_c_and_resume_ends_bit_identical(tmp_path, monkeypatch):
    """The AugMix views come from the run's generator: a run interrupted mid-epoch resumes exactly."""
    import os
    import signal

    import auxtrain.data.augmix as augmix_module
    from auxtrain.export import load_model
    from auxtrain.training import TrainConfig, fit

    options = {**TINY, "train_size": 96, "mode": "augmix"}
    reference = fit(TrainConfig(**options, out=str(tmp_path / "reference")))
    real_augmix, calls = augmix_module.augmix, []

    def augmix_then_ctrl_c(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the first view of the second of three steps, built while the first trains
            os.kill(os.getpid(), signal.SIGINT)
        return real_augmix(*args, **kwargs)

    monkeypatch.setattr(augmix_module, "augmix", augmix_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(**options, out=str(tmp_path / "interrupted")))
    ckpt = torch.load(tmp_path / "interrupted" / "checkpoint_last.pt", weights_only=True)
    # Stopped before step 2 (0-based 1), whose views were drawn ahead: it is replayed on resume.
    assert (ckpt["epoch"], ckpt["step"]) == (0, 1)
    monkeypatch.setattr(augmix_module, "augmix", real_augmix)
    resumed = fit(TrainConfig(**options, out=str(tmp_path / "interrupted"), resume=True))
    a = load_model(reference.model_path).state_dict()
    b = load_model(resumed.model_path).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics[0]["jsd"] == pytest.approx(reference.metrics[0]["jsd"], rel=1e-12)
