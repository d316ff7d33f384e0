"""Image folders at any resolution (ImageNet-style): ``root/train/<class>/*`` and ``root/val/<class>/*``.

Train images get RandomResizedCrop + horizontal flip, with randomness drawn from a generator
seeded by (seed, epoch, index), so a sample's crop depends only on those three numbers: identical
across worker counts and on a resumed epoch. Call :meth:`ImageFolderDataset.set_epoch` each epoch
(:func:`auxtrain.data.make_loader` does). Val images are resized to ``image_size * 256 / 224`` on
the short side and centre-cropped. Items are uint8 tensors (3, S, S), like every auxtrain dataset;
files are decoded with Pillow.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from auxtrain.errors import DataError
from auxtrain.seeding import mix_seed, seeded_generator

from ._base import DatasetNotFoundError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".ppm", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def find_classes(directory: str | os.PathLike) -> tuple[str, ...]:
    """Sorted names of the sub-folders of ``directory`` (the class names)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetNotFoundError(f"image folder {directory} does not exist")
    names = (e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
    classes = tuple(sorted(names))
    if not classes:
        raise DatasetNotFoundError(
            f"no class folders in {directory}; expected {directory}/<class>/<image files>"
        )
    return classes


def find_images(directory: str | os.PathLike, classes: tuple[str, ...]) -> list[tuple[str, int]]:
    """``(path, label)`` of the image files in ``directory/<class>/``, label = index in ``classes``.

    Files are sorted per class; a class without a folder contributes nothing.
    """
    samples: list[tuple[str, int]] = []
    for label, name in enumerate(classes):
        folder = Path(directory) / name
        if not folder.is_dir():
            continue
        files = sorted(
            e.path for e in os.scandir(folder)
            if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)
        )
        samples.extend((f, label) for f in files)
    return samples


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Decodes an image file to a uint8 RGB tensor (3, H, W) with Pillow.

    16-bit images (PNG and TIFF grayscale, Pillow's modes ``I;16*`` and ``I``) are scaled to 8 bit
    (``value / 257``), not clipped; 32-bit float images are refused. A file that cannot be decoded
    (not an image, truncated, larger than Pillow's decompression-bomb limit) raises DataError
    naming it. (torchvision.io decoding is deprecated from torchvision 0.29 on, so Pillow is used.)
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode.startswith("I;16") or im.mode == "I":
                array = _sixteen_to_eight_bit(np.asarray(im), path)
                array = np.repeat(array[..., None], 3, axis=-1)
            elif im.mode == "F":
                raise DataError(f"image file {path} holds 32-bit floating-point pixels, which auxtrain does "
                                "not read; convert it to an 8- or 16-bit PNG or JPEG")
            else:
                array = np.array(im.convert("RGB"), dtype=np.uint8)
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(f"image file {path} is too large to decode safely ({exc}); shrink it or remove it "
                        "from the folder") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # unidentified, truncated, corrupt
        raise DataError(f"cannot decode image file {path} ({type(exc).__name__}: {exc}); replace it with a "
                        "valid image or remove it from the folder") from None
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _sixteen_to_eight_bit(array: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """A 16-bit grayscale image as uint8 (0..65535 -> 0..255, rounded)."""
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() > 65535):
        raise DataError(f"image file {path} holds 32-bit integer pixels, which auxtrain does not read; "
                        "convert it to an 8- or 16-bit PNG")
    return ((array * 255 + 32767) // 65535).astype(np.uint8)


def _sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    return seeded_generator(mix_seed(seed, epoch, index))


def random_resized_crop_params(
    height: int, width: int, generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop covering ``scale`` of the area with aspect in ``ratio``.

    The sampling rule of torchvision's RandomResizedCrop (10 tries, then a centred crop of the
    closest valid aspect), but every draw comes from ``generator``.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        draws = torch.rand(2, generator=generator).tolist()
        target_area = area * (scale[0] + (scale[1] - scale[0]) * draws[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * draws[1])
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class ImageFolderDataset(Dataset):
    """One split of an image folder, yielding ``(uint8 tensor (3, S, S), int label)``.

    Args:
        root: the split folder, holding one sub-folder of images per class.
        train: RandomResizedCrop + flip (True) or resize + centre crop (False).
        image_size: output side S.
        classes: class names in label order (default: the sorted sub-folders of ``root``); a val
            split passes the train split's classes so that labels agree.
        seed: seeds the per-sample augmentation together with the epoch and the index.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        train: bool,
        image_size: int = 224,
        classes: tuple[str, ...] | None = None,
        seed: int = 0,
    ) -> None:
        self.root = Path(root).expanduser()
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size={image_size!r} must be a positive integer")
        found = find_classes(self.root)
        if classes is None:
            classes = found
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise ValueError(
                f"{self.root} has class folders {unknown} that are not in the training classes; "
                "use the same class folders in train/ and val/"
            )
        self.classes = tuple(classes)
        self.train, self.image_size, self.seed, self.epoch = train, image_size, seed, 0
        self.samples = find_images(self.root, self.classes)
        if not self.samples:
            raise DatasetNotFoundError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {self.root}/<class>/"
            )
        self.labels = np.array([label for _, label in self.samples], dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose augmentation draws the next items use."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        image = load_image(path)
        size = [self.image_size, self.image_size]
        if self.train:
            g = _sample_generator(self.seed, self.epoch, index)
            top, left, h, w = random_resized_crop_params(image.shape[-2], image.shape[-1], g)
            image = TF.resized_crop(image, top, left, h, w, size, antialias=True)
            if bool(torch.rand(1, generator=g) < 0.5):
                image = image.flip(-1)
        else:
            image = TF.resize(image, [int(self.image_size * 256 / 224)], antialias=True)
            image = TF.center_crop(image, size)
        return image.contiguous(), label

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, train={self.train}, "
                f"num_images={len(self)}, num_classes={len(self.classes)}, image_size={self.image_size})")
