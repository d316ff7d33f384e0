"""run_splits: seeded train/test subsets and the validation hold-out (auxtrain.data.splits)."""

from __future__ import annotations

import pytest

from auxtrain.data import run_splits, seeded_subset


def _rows(ds):
    """The images of a dataset as a set of byte strings (to test which images a split holds)."""
    return {ds[i][0].numpy().tobytes() for i in range(len(ds))}


def test_val_size_holds_out_training_images_and_never_touches_the_test_split(fake_cifar10):
    root = str(fake_cifar10.root)
    train, val, _ = run_splits("cifar10", root, train_size=30, val_size=12)
    assert (len(train), len(val)) == (30, 12)
    train_rows, val_rows = _rows(train), _rows(val)
    all_train = {img.tobytes() for img in fake_cifar10.train_images}  # (3, 32, 32) like the items
    test_rows = {img.tobytes() for img in fake_cifar10.test_images}
    assert not train_rows & val_rows                       # disjoint
    assert val_rows <= all_train and not val_rows & test_rows
    # The split is a function of data_seed only.
    assert _rows(run_splits("cifar10", root, train_size=30, val_size=12)[1]) == val_rows
    assert _rows(run_splits("cifar10", root, train_size=30, val_size=12, data_seed=1)[1]) != val_rows


def test_val_size_on_shapes_adds_the_validation_images_to_the_generated_ones():
    train, val, _ = run_splits("shapes", train_size=128, test_size=32, val_size=40)
    assert (len(train), len(val)) == (128, 40)
    assert not _rows(train) & _rows(val)


def test_val_size_larger_than_the_training_split_is_a_clear_error(fake_cifar10):
    with pytest.raises(ValueError, match="leaves no training images"):
        run_splits("cifar10", str(fake_cifar10.root), val_size=50)


def test_seeded_subset_is_sorted_seeded_and_whole_when_large(fake_cifar10):
    train, _, _ = run_splits("cifar10", str(fake_cifar10.root))
    a, b = seeded_subset(train, 10, 3), seeded_subset(train, 10, 3)
    assert a.indices == b.indices == sorted(a.indices) and len(a) == 10
    assert seeded_subset(train, 10, 4).indices != a.indices
    assert seeded_subset(train, None, 3) is train and seeded_subset(train, 10**6, 3) is train
