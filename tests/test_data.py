"""Tests of auxtrain.data: readers, restricted unpickling, shapes, image folders, augmentation, loaders."""

from __future__ import annotations

import pickle
import time
import urllib.error

import numpy as np
import pytest
import torch
from conftest import write_fake_cifar, write_py2_pickle
from PIL import Image

from auxtrain.data import (
    CIFAR10,
    DATASET_NAMES,
    ArrayDataset,
    DatasetNotFoundError,
    UnsafePickleError,
    augment_batch,
    build_datasets,
    generate_shapes,
    make_loader,
    safe_load,
)
from auxtrain.nn import InputNormalization

# ----------------------------------------------------------------------------------------------
# CIFAR readers and the restricted unpickler


@pytest.mark.parametrize("fixture", ["fake_cifar10", "fake_cifar100"])
def test_cifar_reads_real_layout(fixture, request):
    fake = request.getfixturevalue(fixture)
    train, test, spec = build_datasets(fake.name, fake.root)
    assert spec.name == fake.name and spec.num_classes == len(fake.classes) == len(spec.classes)
    assert spec.classes == tuple(fake.classes) and spec.image_size == (32, 32)
    assert len(spec.mean) == len(spec.std) == 3
    np.testing.assert_array_equal(train.labels, fake.train_labels)
    np.testing.assert_array_equal(test.labels, fake.test_labels)
    np.testing.assert_array_equal(train.images, fake.train_images.transpose(0, 2, 3, 1))
    assert train.images.shape == (len(fake.train_labels), 32, 32, 3) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64
    image, label = test[3]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32) and isinstance(label, int)
    assert torch.equal(image, torch.from_numpy(fake.test_images[3])) and label == fake.test_labels[3]


def test_items_are_views_and_batches_match_items(fake_cifar10):
    train, _, _ = build_datasets("cifar10", fake_cifar10.root)
    image, _ = train[5]
    assert image.untyped_storage().data_ptr() == train[0][0].untyped_storage().data_ptr()  # no copy
    items = train.__getitems__([7, 2, 9])
    images, labels = train.get_batch([7, 2, 9])
    assert [lab for _, lab in items] == labels.tolist() == fake_cifar10.train_labels[[7, 2, 9]].tolist()
    assert all(torch.equal(img, images[i]) for i, (img, _) in enumerate(items))


def test_safe_load_reads_numpy_pickles_at_every_protocol():
    obj = {"data": np.arange(12, dtype=np.uint8).reshape(3, 4), "labels": [1, 2, 3], "name": b"x"}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        back = safe_load(pickle.dumps(obj, protocol=protocol))
        np.testing.assert_array_equal(back["data"], obj["data"])
        assert back["labels"] == [1, 2, 3] and back["name"] == b"x"


class _Exploit:
    """Unpickling this creates the file ``path`` (opening it for writing), i.e. it runs code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_restricted_unpickler_refuses_code(tmp_path):
    # The payload does run under plain pickle (so the assertion below can fail) ...
    witness = tmp_path / "witness"
    pickle.loads(pickle.dumps(_Exploit(witness)))
    assert witness.exists()
    # ... but not through the dataset reader, even hidden inside a real-looking batch file.
    fake = write_fake_cifar(tmp_path / "data", "cifar10")
    marker = tmp_path / "marker"
    batch = {"batch_label": "training batch 1 of 5", "labels": [0] * 10,
             "data": np.zeros((10, 3072), np.uint8), "filenames": [_Exploit(marker)]}
    with open(fake.root / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    with pytest.raises(UnsafePickleError, match=r"io\.open"):
        build_datasets("cifar10", fake.root)
    assert not marker.exists()
    for payload in (pickle.dumps(_Exploit(marker)), pickle.dumps(np.array([_Exploit(marker)], dtype=object))):
        with pytest.raises(UnsafePickleError):
            safe_load(payload)
    assert not marker.exists()


def test_cifar_structure_is_checked(tmp_path):
    fake = write_fake_cifar(tmp_path / "data", "cifar10")
    write_py2_pickle(fake.root / "cifar-10-batches-py" / "test_batch",
                     {"data": np.zeros((4, 3072), np.float32), "labels": [0, 1, 2, 3]})
    with pytest.raises(ValueError, match=r"uint8 array of shape \(N, 3072\)"):
        build_datasets("cifar10", fake.root)
    write_py2_pickle(fake.root / "cifar-10-batches-py" / "test_batch",
                     {"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 10]})
    with pytest.raises(ValueError, match="labels outside 0..9"):
        build_datasets("cifar10", fake.root)


def test_cifar_md5_check_is_opt_in(fake_cifar10):
    build_datasets("cifar10", fake_cifar10.root)  # structure is fine: accepted by default
    with pytest.raises(ValueError, match="check_md5=True"):
        build_datasets("cifar10", fake_cifar10.root, check_md5=True)


def test_missing_files_error_says_where_and_mentions_download(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        build_datasets("cifar100", tmp_path)
    text = str(info.value)
    assert str(tmp_path / "cifar-100-python") in text and "--download" in text
    assert "train, test, meta" in text and "cifar-100-python.tar.gz" in text
    assert isinstance(info.value, ValueError) and isinstance(info.value, FileNotFoundError)


def test_download_uses_torchvision_with_md5(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kw):
        calls.append((url, filename, md5))
        write_fake_cifar(tmp_path, "cifar10")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    train, _, _ = build_datasets("cifar10", tmp_path, download=True)
    assert calls == [(CIFAR10.url, CIFAR10.filename, CIFAR10.tgz_md5)] and len(train) == 50
    build_datasets("cifar10", tmp_path, download=True)  # files present: no second download
    assert len(calls) == 1

    def offline(*args, **kw):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(RuntimeError, match="could not download .* cifar-100-python"):
        build_datasets("cifar100", tmp_path / "empty", download=True)


def test_unknown_dataset_and_bad_arguments(fake_cifar10):
    with pytest.raises(ValueError, match="cifar10, cifar100, shapes, imagefolder"):
        build_datasets("mnist")
    assert DATASET_NAMES == ("cifar10", "cifar100", "shapes", "imagefolder")
    with pytest.raises(ValueError, match="image_size"):
        build_datasets("cifar10", fake_cifar10.root, image_size=64)
    with pytest.raises(ValueError, match="root"):
        build_datasets("cifar10")
    with pytest.raises(TypeError, match="train_sz"):
        build_datasets("shapes", train_sz=10)


# ----------------------------------------------------------------------------------------------
# shapes


def test_shapes_deterministic_balanced_and_split_streams():
    a, la = generate_shapes(200, seed=3)
    b, lb = generate_shapes(200, seed=3)
    assert a.tobytes() == b.tobytes() and np.array_equal(la, lb)
    c, _ = generate_shapes(200, seed=4)
    assert not np.array_equal(a, c)
    t, _ = generate_shapes(200, seed=3, split="test")
    assert not np.array_equal(a, t)
    assert np.array_equal(np.bincount(la, minlength=10), [20] * 10)
    assert a.dtype == np.uint8 and a.shape == (200, 3, 32, 32)
    # Images vary in content: not constant images, and not a copy of each other.
    assert a.reshape(200, -1).std(axis=1).min() > 3
    assert len({img.tobytes() for img in a}) == 200


def test_shapes_default_build_is_fast_and_well_formed():
    start = time.perf_counter()
    train, test, spec = build_datasets("shapes", seed=0)
    elapsed = time.perf_counter() - start
    assert elapsed < 20, f"generating the default shapes splits took {elapsed:.1f} s"  # ~1 s when idle
    assert (len(train), len(test)) == (10_000, 2_000)
    assert spec.num_classes == 10 and spec.image_size == (32, 32) and len(spec.classes) == 10
    # The fixed normalisation constants match the default train split.
    x = train.images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(x.mean(0), spec.mean, atol=2e-3)
    np.testing.assert_allclose(x.std(0), spec.std, atol=2e-3)


def test_shapes_sizes_and_image_size():
    train, test, spec = build_datasets("shapes", train_size=30, test_size=10, image_size=48, seed=1)
    assert len(train) == 30 and len(test) == 10 and spec.image_size == (48, 48)
    assert train[0][0].shape == (3, 48, 48)


# ----------------------------------------------------------------------------------------------
# image folders


def _write_folder(root, classes, sizes, seed=0):
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            mode = "L" if i == 1 else "RGB"
            shape = (h, w) if mode == "L" else (h, w, 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / c / f"{i}.png")


def test_imagefolder(tmp_path):
    _write_folder(tmp_path / "train", ["cat", "dog"], [(40, 30), (24, 50), (33, 33)])
    _write_folder(tmp_path / "val", ["cat", "dog"], [(40, 30), (20, 20)], seed=1)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    train, val, spec = build_datasets("imagefolder", tmp_path, image_size=16, seed=5)
    assert spec.classes == ("cat", "dog") and spec.num_classes == 2 and spec.image_size == (16, 16)
    assert len(train) == 6 and len(val) == 4 and train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    for ds in (train, val):
        for i in range(len(ds)):
            image, label = ds[i]
            assert image.shape == (3, 16, 16) and image.dtype == torch.uint8 and label == ds.labels[i]
    # Train crops depend only on (seed, epoch, index): same again, different next epoch.
    first = [train[i][0] for i in range(len(train))]
    assert all(torch.equal(a, train[i][0]) for i, a in enumerate(first))
    train.set_epoch(1)
    assert not all(torch.equal(a, train[i][0]) for i, a in enumerate(first))
    # Val: resize + centre crop, deterministic.
    assert torch.equal(val[0][0], val[0][0])


def test_imagefolder_errors(tmp_path):
    _write_folder(tmp_path / "train", ["cat"], [(20, 20)])
    with pytest.raises(DatasetNotFoundError, match="val"):
        build_datasets("imagefolder", tmp_path)
    _write_folder(tmp_path / "val", ["cow"], [(20, 20)])
    with pytest.raises(ValueError, match="cow"):
        build_datasets("imagefolder", tmp_path)


# ----------------------------------------------------------------------------------------------
# augment_batch and normalize


def _distinct_batch(b=64, h=8, w=8):
    # Values 1..255 (never 0, so zero padding is recognisable) and all windows distinct.
    return torch.randint(1, 256, (b, 3, h, w), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def test_augment_crop_is_shifted_window_with_zero_padding():
    x = _distinct_batch()
    out = augment_batch(x, torch.Generator().manual_seed(1), crop_padding=2, flip=False)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    shifts = []
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert len(matches) == 1
        shifts.append(matches[0])
    assert len(set(shifts)) > 10  # each image draws its own offsets
    assert (out == 0).any()  # some windows reach into the zero padding


def test_augment_flip_and_independence():
    x = _distinct_batch()
    out = augment_batch(x, torch.Generator().manual_seed(2), crop_padding=0, flip=True)
    flipped = torch.tensor([torch.equal(out[i], x[i].flip(-1)) for i in range(len(x))])
    kept = torch.tensor([torch.equal(out[i], x[i]) for i in range(len(x))])
    assert bool((flipped ^ kept).all()) and 10 < int(flipped.sum()) < 54
    same = x[:1].expand(64, -1, -1, -1).contiguous()  # one image, 64 copies: different draws
    aug = augment_batch(same, torch.Generator().manual_seed(3))
    assert len({a.numpy().tobytes() for a in aug}) > 20


def test_augment_determinism_and_float_input():
    x = _distinct_batch()
    a = augment_batch(x, torch.Generator().manual_seed(7))
    b = augment_batch(x, torch.Generator().manual_seed(7))
    c = augment_batch(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    f = augment_batch(x.float() / 255, torch.Generator().manual_seed(7))
    assert f.dtype == torch.float32 and torch.equal((f * 255).round().to(torch.uint8), a)
    with pytest.raises(ValueError, match="crop_padding"):
        augment_batch(x, torch.Generator(), crop_padding=-1)
    with pytest.raises(TypeError, match="generator"):
        augment_batch(x, None)


def test_input_normalization(fake_cifar10):
    _, _, spec = build_datasets("cifar10", fake_cifar10.root)
    x = _distinct_batch(4, 5, 5)
    layer = InputNormalization(spec.mean, spec.std)
    y = layer(x)
    mean, std = torch.tensor(spec.mean).view(3, 1, 1), torch.tensor(spec.std).view(3, 1, 1)
    assert y.dtype == torch.float32 and torch.equal(y, (x.float() / 255 - mean) / std)
    assert torch.equal(layer(x.float() / 255), y)  # uint8 and float [0, 1] give the same input
    assert layer.state_dict() == {}
    with pytest.raises(ValueError, match="shape"):
        layer(x[:, :2])
    with pytest.raises(TypeError, match="uint8 or float"):
        layer(x.long())


# ----------------------------------------------------------------------------------------------
# make_loader


def _indexed_dataset(n=40):
    images = np.zeros((n, 3, 4, 4), np.uint8)
    images[:, 0, 0, 0] = np.arange(n)
    return ArrayDataset(images, np.arange(n))


def _order(loader):
    out = []
    for images, labels in loader:
        assert torch.equal(images[:, 0, 0, 0].long(), labels)  # images and labels stay paired
        out += labels.tolist()
    return out


def test_loader_order_depends_only_on_seed_and_epoch():
    ds = _indexed_dataset()
    base = _order(make_loader(ds, 8, shuffle=True, seed=1, epoch=3))
    assert sorted(base) == list(range(40))
    assert _order(make_loader(ds, 8, shuffle=True, seed=1, epoch=3)) == base
    assert _order(make_loader(ds, 8, shuffle=True, seed=1, epoch=4)) != base
    assert _order(make_loader(ds, 8, shuffle=True, seed=2, epoch=3)) != base
    assert _order(make_loader(ds, 8, shuffle=False)) == list(range(40))
    loader = make_loader(ds, 16, shuffle=True, drop_last=True)
    assert len(loader) == 2 and len(_order(loader)) == 32
    images, labels = next(iter(make_loader(ds, 8, shuffle=False)))
    assert images.shape == (8, 3, 4, 4) and images.dtype == torch.uint8 and labels.dtype == torch.int64


def test_loader_with_workers_matches_in_process():
    ds = _indexed_dataset()
    assert _order(make_loader(ds, 8, shuffle=True, seed=5, workers=1)) == _order(
        make_loader(ds, 8, shuffle=True, seed=5, workers=0))


def test_loader_accepts_distributed_sampler():
    from torch.utils.data.distributed import DistributedSampler

    ds = _indexed_dataset()
    orders = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        orders.append(_order(make_loader(ds, 4, shuffle=False, epoch=2, sampler=sampler)))
        assert sampler.epoch == 2
    assert sorted(orders[0] + orders[1]) == list(range(40))


def test_loader_on_item_dataset(tmp_path):
    _write_folder(tmp_path / "train", ["a", "b"], [(20, 20), (30, 24)])
    _write_folder(tmp_path / "val", ["a", "b"], [(20, 20)])
    train, _, _ = build_datasets("imagefolder", tmp_path, image_size=8)
    batches = list(make_loader(train, 3, shuffle=True, epoch=1))
    assert [b[0].shape for b in batches] == [(3, 3, 8, 8), (1, 3, 8, 8)]
    assert train.epoch == 1
    again = list(make_loader(train, 3, shuffle=True, epoch=1))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))


def test_loader_fetches_subsets_in_batches():
    ds = _indexed_dataset()
    sub = torch.utils.data.Subset(torch.utils.data.Subset(ds, list(range(10, 40))), [0, 5, 29])
    loader = make_loader(sub, 2, shuffle=False)
    assert _order(loader) == [10, 15, 39]
