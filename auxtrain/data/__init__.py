"""Datasets (CIFAR-10/100 pickles, shapes, image folders), batched augmentation, loaders, paired views."""

from ._base import ArrayDataset, DatasetNotFoundError, DatasetSpec
from ._factory import DATASET_NAMES, build_datasets
from ._safe_pickle import RestrictedUnpickler, UnsafePickleError, safe_load
from .augment import augment_batch, augment_with_views
from .cifar import CIFAR10, CIFAR100
from .image_folder import ImageFolderDataset
from .loaders import make_loader
from .shapes import SHAPES_CLASSES, Shapes, generate_shapes
from .splits import run_splits, seeded_subset
from .views import make_views, parse_branches

__all__ = [
    # _base
    "ArrayDataset", "DatasetNotFoundError", "DatasetSpec",
    # _factory
    "DATASET_NAMES", "build_datasets",
    # _safe_pickle
    "RestrictedUnpickler", "UnsafePickleError", "safe_load",
    # augment
    "augment_batch", "augment_with_views",
    # cifar
    "CIFAR10", "CIFAR100",
    # image_folder
    "ImageFolderDataset",
    # loaders
    "make_loader",
    # shapes
    "SHAPES_CLASSES", "Shapes", "generate_shapes",
    # splits
    "run_splits", "seeded_subset",
    # views
    "make_views", "parse_branches",
]
