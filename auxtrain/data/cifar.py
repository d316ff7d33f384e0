"""CIFAR-10 and CIFAR-100 from the original python-pickle layout, read without running pickled code.

Layout under ``root`` (as distributed by the CIFAR authors and read by torchvision)::

    root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    root/cifar-100-python/{train, test, meta}

The files are read with :func:`auxtrain.data._safe_pickle.safe_load` (containers and numpy arrays
only). Instead of the md5 of each extracted file, which only the official bytes pass (the
JPEG-sourced CIFAR-10 rebuilt in this project's shared data folder differs), the reader checks the
structure: keys, dtype, shape (N, 3072), label count and range, and the number of classes.
``check_md5=True`` also demands the official checksums. ``download=True`` fetches the official
archive with torchvision's downloader, which verifies the archive's md5.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from auxtrain.errors import DataError, DownloadError

from ._base import ArrayDataset, DatasetNotFoundError
from ._safe_pickle import UnsafePickleError, safe_load


class CIFAR10(ArrayDataset):
    """CIFAR-10 train or test split as an :class:`ArrayDataset` (uint8 (3, 32, 32), int label)."""

    # File tables as in torchvision.datasets.CIFAR10.
    base_folder = "cifar-10-batches-py"
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    filename = "cifar-10-python.tar.gz"
    tgz_md5 = "c58f30108f718f92721af3b95e74349a"
    train_list = [
        ["data_batch_1", "c99cafc152244af753f735de768cd75f"],
        ["data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"],
        ["data_batch_3", "54ebc095f3ab1f0389bbae665268c751"],
        ["data_batch_4", "634d18415352ddfa80567beed471001a"],
        ["data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"],
    ]
    test_list = [
        ["test_batch", "40351d587109b95175f43aff81a1287e"],
    ]
    meta = {"filename": "batches.meta", "key": "label_names", "md5": "5ff9c542aee3614f3951f8cda6e48888"}
    label_key = "labels"
    num_classes = 10

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        *,
        download: bool = False,
        check_md5: bool = False,
    ) -> None:
        self.root = Path(root).expanduser()
        self.train = train
        if download and not self._all_files_present():
            self.download(self.root)
        missing = [f for f in self._all_files() if not (self.root / self.base_folder / f).is_file()]
        if missing:
            raise DatasetNotFoundError(self._missing_message(missing))
        if check_md5:
            self._check_md5()
        self.classes: tuple[str, ...] = self._load_classes()
        entries = self.train_list if train else self.test_list
        datas, labels = [], []
        for name, _ in entries:
            data, lab = self._load_batch(self.root / self.base_folder / name)
            datas.append(data)
            labels.append(lab)
        data = np.concatenate(datas) if len(datas) > 1 else datas[0]
        super().__init__(data.reshape(-1, 3, 32, 32), np.concatenate(labels))

    # -- files -----------------------------------------------------------------------------------
    @classmethod
    def _all_files(cls) -> list[str]:
        return [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]

    def _all_files_present(self) -> bool:
        return all((self.root / self.base_folder / f).is_file() for f in self._all_files())

    @classmethod
    def download(cls, root: str | os.PathLike) -> None:
        """Downloads and extracts the official archive into ``root`` (md5 of the archive checked)."""
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
        except Exception as e:  # URLError, HTTPError, socket errors, md5 mismatch...
            raise DownloadError(
                f"could not download {cls.url} into {root} ({type(e).__name__}: {e}). Without network, "
                f"download {cls.filename} elsewhere and extract it so that {Path(root) / cls.base_folder} "
                f"holds {', '.join(cls._all_files())}"
            ) from e

    def _missing_message(self, missing: list[str]) -> str:
        folder = self.root / self.base_folder
        return (
            f"{type(self).__name__} files not found: {', '.join(missing)} missing from {folder}. "
            f"Put the python version of the dataset there (extract {self.filename} from {self.url} "
            f"into {self.root}, giving {self.base_folder}/ with {', '.join(self._all_files())}), point "
            f"--data-root (root=) at the folder that contains {self.base_folder}/, or pass --download "
            f"(download=True) to fetch it."
        )

    def _check_md5(self) -> None:
        from torchvision.datasets.utils import check_integrity

        folder = self.root / self.base_folder
        entries = self.train_list + self.test_list + [[self.meta["filename"], self.meta["md5"]]]
        bad = [name for name, md5 in entries if not check_integrity(str(folder / name), md5)]
        if bad:
            raise ValueError(
                f"check_md5=True: {', '.join(bad)} in {folder} differ from the official release's md5. "
                "Re-extract the official archive, or pass check_md5=False to accept other copies that "
                "have the right structure (e.g. a rebuilt CIFAR-10)."
            )

    # -- parsing ---------------------------------------------------------------------------------
    def _replace_fix(self) -> str:
        return (f"replace it with the file from the official archive (extract {self.filename} from "
                f"{self.url} into {self.root}), or delete {self.root / self.base_folder} and pass --download")

    def _load_classes(self) -> tuple[str, ...]:
        path = self.root / self.base_folder / self.meta["filename"]
        meta = self._load_dict(path)
        names = meta.get(self.meta["key"])
        if not isinstance(names, list) or len(names) != self.num_classes:
            raise DataError(
                f"{path}: expected key {self.meta['key']!r} with {self.num_classes} class names, "
                f"got {type(names).__name__} of length {len(names) if hasattr(names, '__len__') else '?'}"
            )
        return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)

    def _load_dict(self, path: Path) -> dict:
        try:
            obj = safe_load(path, encoding="latin1")
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{exc}. Nothing in it was run; {self._replace_fix()}") from None
        except OSError:  # unreadable (permissions, I/O error): the CLI names the file and the reason
            raise
        except Exception as exc:  # truncated, zero bytes, random bytes: pickle raises many types
            raise DataError(f"{path} is not a readable {type(self).__name__} batch file (truncated or "
                            f"corrupt: {type(exc).__name__}: {exc}); {self._replace_fix()}") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}; "
                            f"{self._replace_fix()}")
        # Files written with bytes keys (rather than Python 2 str) load as bytes: normalise.
        return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}

    def _load_batch(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        entry = self._load_dict(path)
        for key in ("data", self.label_key):
            if key not in entry:
                raise DataError(f"{path}: key {key!r} missing (keys: {sorted(map(str, entry))})")
        data, labels = entry["data"], entry[self.label_key]
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
                and data.shape[1] == 3072):
            raise DataError(
                f"{path}: 'data' must be a uint8 array of shape (N, 3072), got "
                f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}"
            )
        labels = np.asarray(labels)
        if labels.shape != (data.shape[0],) or labels.dtype.kind not in "iu":
            raise DataError(
                f"{path}: {self.label_key!r} must be {data.shape[0]} integers, got {labels.dtype} "
                f"{labels.shape}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise DataError(f"{path}: labels outside 0..{self.num_classes - 1}")
        return data, labels.astype(np.int64)


class CIFAR100(CIFAR10):
    """CIFAR-100 (fine labels) train or test split as an :class:`ArrayDataset`."""

    # File tables as in torchvision.datasets.CIFAR100.
    base_folder = "cifar-100-python"
    url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    filename = "cifar-100-python.tar.gz"
    tgz_md5 = "eb9058c3a382ffc7106e4002c42a8d85"
    train_list = [
        ["train", "16019d7e3df5f24257cddd939b257f8d"],
    ]
    test_list = [
        ["test", "f0ef6b0ae62326f3e7ffdfab6717acfc"],
    ]
    meta = {"filename": "meta", "key": "fine_label_names", "md5": "7973b15100ade9c7d40fb424638fde48"}
    label_key = "fine_labels"
    num_classes = 100


# Channel statistics of the training sets on the 0..1 scale (the values commonly used with them).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
