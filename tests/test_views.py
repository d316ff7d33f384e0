"""Tests of auxtrain.data.views: branch syntax, severity syntax and paired corrupted views."""

from __future__ import annotations

import pytest
import torch

import corruptions
from auxtrain.data import make_views, parse_branches
from corruptions import parse_severities

NOISE = ("gaussian_noise", "shot_noise", "impulse_noise")
BLUR = ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur")


def test_parse_branches_families_names_and_joins():
    assert parse_branches("noise,blur") == [NOISE, BLUR]
    assert parse_branches(" Noise , gaussian_blur ") == [NOISE, ("gaussian_blur",)]
    assert parse_branches("gaussian_noise+fog,contrast") == [("gaussian_noise", "fog"), ("contrast",)]
    assert parse_branches("noise+blur") == [NOISE + BLUR]
    assert parse_branches("none") == [] and parse_branches(" NONE ") == []
    assert parse_branches("all") == [tuple(corruptions.get_corruption_names("all"))]
    assert parse_branches("common") == [tuple(corruptions.get_corruption_names("common"))]
    assert parse_branches("weather,digital,extra") == [
        tuple(corruptions.get_corruption_names(f)) for f in ("weather", "digital", "extra")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("noise,gausian_noise", r"'gausian_noise' is neither a corruption.*noise, blur.*gaussian_noise"),
        ("noise,noise", "appears in branches 1 and 2"),
        ("noise,gaussian_noise", "'gaussian_noise' appears in branches 1 and 2"),
        ("fog+fog", "twice in one branch"),
        ("noise,,blur", "empty branch"),
        ("noise+", "empty branch"),
        ("", "empty"),
        ("none,noise", "'none' cannot be combined"),
    ],
)
def test_parse_branches_rejects(text, message):
    with pytest.raises(ValueError, match=message):
        parse_branches(text)


def test_parse_branches_type():
    with pytest.raises(TypeError, match="string"):
        parse_branches(["noise"])


def test_parse_severities():
    assert parse_severities("1-5") == (1, 2, 3, 4, 5)
    assert parse_severities("3") == (3,)
    assert parse_severities("5,1,3") == (1, 3, 5)
    assert parse_severities("1-2,5") == (1, 2, 5)
    assert parse_severities(4) == (4,) and parse_severities([2, 1]) == (1, 2)
    for bad, message in [("0-5", "outside"), ("6", "outside"), ("5-1", "descending"), ("a", "not valid"),
                         ("1,1", "twice"), ("", "empty"), ([], "empty")]:
        with pytest.raises(ValueError, match=message):
            parse_severities(bad)
    with pytest.raises(TypeError):
        parse_severities(True)


def _images(b=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_make_views_shapes_determinism_and_input_untouched():
    x = _images()
    before = x.clone()
    branches = parse_branches("brightness+pixelate,gaussian_noise")
    a = make_views(x, branches, torch.Generator().manual_seed(0))
    b = make_views(x, branches, torch.Generator().manual_seed(0))
    c = make_views(x, branches, torch.Generator().manual_seed(1))
    assert torch.equal(x, before)
    assert len(a) == 2 and all(v.shape == x.shape and v.dtype == x.dtype and v.device == x.device for v in a)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not all(torch.equal(u, v) for u, v in zip(a, c, strict=True))
    assert all(not torch.equal(v, x) for v in a)
    assert make_views(x, [], torch.Generator()) == []
    # Branch-syntax text is accepted as well.
    d = make_views(x, "brightness+pixelate,gaussian_noise", torch.Generator().manual_seed(0))
    assert all(torch.equal(u, v) for u, v in zip(a, d, strict=True))


def test_views_are_aligned_and_members_drawn_per_image():
    # Deterministic corruptions: every view image must be its own clean image corrupted by one of
    # the branch's members at one of the allowed severities, and every combination must occur.
    x = _images(64)
    (view,) = make_views(x, [("brightness", "pixelate")], torch.Generator().manual_seed(3), severities=(1, 5))
    candidates = {(name, s): corruptions.corrupt(x, name, severity=s)
                  for name in ("brightness", "pixelate") for s in (1, 5)}
    used = set()
    for i in range(len(x)):
        hits = [key for key, out in candidates.items() if torch.equal(view[i], out[i])]
        assert hits, f"view image {i} is not a corruption of clean image {i}"
        used.update(hits)
    assert used == set(candidates)


def test_single_member_single_severity_equals_engine_and_float_input():
    x = _images(8)
    (view,) = make_views(x, [("contrast",)], torch.Generator().manual_seed(0), severities="4")
    assert torch.equal(view, corruptions.corrupt(x, "contrast", severity=4))
    (fview,) = make_views(x.float() / 255, [("contrast",)], torch.Generator().manual_seed(0), severities="4")
    assert fview.dtype == torch.float32 and fview.shape == x.shape


def test_make_views_errors():
    x = _images(4)
    with pytest.raises(TypeError, match="generator"):
        make_views(x, [("fog",)], None)
    with pytest.raises(ValueError, match="unknown corruption"):
        make_views(x, [("fgo",)], torch.Generator())
    with pytest.raises(ValueError, match="outside"):
        make_views(x, [("fog",)], torch.Generator(), severities=(0,))


# ---------------------------------------------------------------- views of a randomly cropped batch


def test_views_corrupt_the_padded_crops_by_default():
    """The default order (as in method.md): the views corrupt the cropped clean batch, border included."""
    from auxtrain.data import augment_with_views

    x = _images(32).clamp_(min=1)  # zero only in the padding
    def views(im):
        return make_views(im, [NOISE], torch.Generator().manual_seed(3), severities=(5,))

    clean, view = augment_with_views(x, torch.Generator().manual_seed(9), views)
    assert torch.equal(view, views(clean)[0])
    padding = clean == 0
    assert padding.any() and (view[padding] != 0).float().mean() > 0.1  # the noise reaches the border


def test_corrupt_then_crop_leaves_the_zero_border_clean_with_the_same_draws():
    """view_order="corrupt_then_crop" (the ablation): views of the un-augmented images, then the clean
    batch's crop and flip; the crops are the default order's, so the two orders compare pairwise."""
    from auxtrain.data import augment_with_views

    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (64, 3, 16, 16), dtype=torch.uint8, generator=g)  # no zero pixel of its own
    gen = torch.Generator().manual_seed(5)
    clean, *views = augment_with_views(x, gen, lambda im: make_views(im, [NOISE, BLUR], gen, severities=(5,)),
                                       crop_padding=4, view_order="corrupt_then_crop")
    assert torch.equal(clean, augment_with_views(x, torch.Generator().manual_seed(5))[0])
    padding = clean == 0
    assert padding.float().mean() > 0.05  # most of the 64 crops are shifted: a border to test
    for view in views:
        assert torch.equal(view[padding], torch.zeros_like(view[padding]))
        assert (view[~padding] != clean[~padding]).float().mean() > 0.5  # the images are corrupted


def test_views_of_a_cropped_batch_stay_pixel_aligned_with_the_clean_images():
    """Either order: the same crop and flip for the clean batch and every view; a per-pixel corruption
    (brightness) commutes with them, so inside the image both orders give the same view."""
    from auxtrain.data import augment_batch, augment_with_views

    x = _images(32).clamp_(min=1)  # zero only in the padding
    def brighten(im):
        return [corruptions.corrupt(im, "brightness", severity=4)]

    for order in ("crop_then_corrupt", "corrupt_then_crop"):
        clean, view = augment_with_views(x, torch.Generator().manual_seed(9), brighten, view_order=order)
        # The crops are drawn first, from the same stream as augment_batch: the clean batch is unchanged.
        assert torch.equal(clean, augment_batch(x, torch.Generator().manual_seed(9)))
        inside = clean != 0  # pixels of the image, not the padding
        expected = corruptions.corrupt(clean, "brightness", severity=4)
        assert inside.float().mean() > 0.5
        assert torch.equal(view[inside], expected[inside])
    with pytest.raises(ValueError, match="view_order must be one of"):
        augment_with_views(x, torch.Generator(), brighten, view_order="before")


AUTHORS = ("authors_blur", "authors_noise", "authors_jitter", "authors_rotate")


def test_branches_may_name_the_augmix_and_authors_training_views():
    from auxtrain.data.views import seen_corruptions

    assert parse_branches("augmix") == [("augmix",)]
    assert parse_branches("augmix,authors") == [("augmix",), AUTHORS]
    assert parse_branches(",".join(AUTHORS)) == [(name,) for name in AUTHORS]
    assert parse_branches("noise+authors_blur,augmix") == [(*NOISE, "authors_blur"), ("augmix",)]
    assert seen_corruptions(parse_branches("noise+authors_blur,augmix")) == list(NOISE)
    with pytest.raises(ValueError, match="'authors_blur' appears in branches 1 and 2"):
        parse_branches("authors,authors_blur")
    with pytest.raises(ValueError, match="training views authors, augmix"):
        parse_branches("augmx")
    # The corruption library (eval, make-c, "all") never sees them: they cannot enter an mCE.
    assert not set(AUTHORS) & set(corruptions.get_corruption_names("all"))
    with pytest.raises(ValueError, match="neither a corruption nor a subset"):
        corruptions.resolve_names("authors")


def test_make_views_with_training_view_branches_is_seeded_and_per_image():
    torch.manual_seed(0)
    images = (torch.rand(12, 3, 16, 16) * 255).to(torch.uint8)
    branches = parse_branches("augmix,authors,noise")
    views = make_views(images, branches, torch.Generator().manual_seed(5))
    again = make_views(images, branches, torch.Generator().manual_seed(5))
    assert len(views) == 3 and all(torch.equal(a, b) for a, b in zip(views, again, strict=True))
    assert all(v.shape == images.shape and v.dtype == torch.uint8 for v in views)
    assert all((v != images).float().mean() > 0.2 for v in views)
    same = images[:1].repeat(12, 1, 1, 1)  # identical images draw different views
    augmix_view = make_views(same, [("augmix",)], torch.Generator().manual_seed(2))[0]
    assert len({bytes(v.numpy()) for v in augmix_view}) == 12
