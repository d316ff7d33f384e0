"""A restricted unpickler for dataset files: containers and numpy arrays, never arbitrary code.

``pickle.load`` runs whatever callable a file names (``os.system`` included), so a downloaded or
shared CIFAR pickle could execute code. :class:`RestrictedUnpickler` resolves only the globals
the real CIFAR-10/100 files (and numpy's own array pickling, old and new module paths) need:

- ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct``, ``numpy.ndarray``
  and ``numpy.dtype`` (how numpy pickles an array at protocols 0-4);
- ``numpy.core.numeric._frombuffer`` / ``numpy._core.numeric._frombuffer`` (protocol 5 arrays);
- ``_codecs.encode`` (how Python 3 writes ``bytes`` at protocol <= 2).

Everything else (``os.system``, ``builtins.eval``, ``subprocess.*``, any class) raises
:class:`UnsafePickleError` before anything is called. Dicts, lists, tuples, strings, bytes and
numbers need no global and load as usual. Object-dtype arrays are refused as well, because their
items could hold references that are resolved lazily by callers.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from typing import Any, BinaryIO

import numpy as np

from auxtrain.errors import DataError

try:  # numpy >= 2
    from numpy._core.numeric import _frombuffer
except ImportError:  # numpy 1.x
    from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]

# The array reconstructor numpy itself pickles with, taken from a live array so that no
# deprecated ``numpy.core`` import is needed on numpy 2.
_reconstruct = np.empty(0).__reduce__()[0]


def _checked_dtype(*args: Any, **kwargs: Any) -> np.dtype:
    dtype = np.dtype(*args, **kwargs)
    if dtype.hasobject:
        raise UnsafePickleError("pickle holds an object-dtype numpy array; only plain arrays are allowed")
    return dtype


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _checked_dtype,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): codecs.encode,
}


class UnsafePickleError(pickle.UnpicklingError, DataError):
    """Raised when a pickle asks for a global outside the allow-list (or holds object arrays).

    Also a :class:`~auxtrain.errors.DataError`: the command line reports it as a bad input file.
    """


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the allow-listed globals above."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load global {module}.{name} from a dataset pickle: only builtin "
                "containers and numpy arrays are allowed (the file is not a plain CIFAR batch)"
            ) from None


def safe_load(file: str | os.PathLike | BinaryIO | bytes, *, encoding: str = "latin1") -> Any:
    """Loads a pickle with :class:`RestrictedUnpickler`.

    ``file`` is a path (named in an UnsafePickleError), an open binary file or the pickled bytes.
    ``encoding="latin1"`` reads Python 2 strings as ``str`` (keys like ``"data"``), as torchvision's
    CIFAR reader does, and is the encoding numpy documents for Python 2 array pickles.
    """
    if isinstance(file, (bytes, bytearray)):
        return RestrictedUnpickler(io.BytesIO(file), encoding=encoding).load()
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as f:
            try:
                return RestrictedUnpickler(f, encoding=encoding).load()
            except UnsafePickleError as exc:  # name the file: the caller may read many
                raise UnsafePickleError(f"{os.fspath(file)}: {exc}") from None
    return RestrictedUnpickler(file, encoding=encoding).load()
