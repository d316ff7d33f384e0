"""Config dataclasses of commands, built from layers: defaults < (base) < config file < flags.

A config file is a flat mapping from option names to values, e.g. ``epochs: 30`` or
``data-root = "data"``; keys may use dashes or underscores. Unknown keys are rejected with the
list of valid names, so a typo never silently does nothing.

A command declares its options once, as a dataclass whose fields carry their help in
``field(metadata=...)`` (see :mod:`auxtrain._flags`), and builds its parser and its config with::

    add_config_file_argument(parser)                 # -c/--config FILE
    add_dataclass_arguments(parser, MyConfig)        # one flag per field
    ...
    config = config_from_args(MyConfig, parser.parse_args())
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from auxtrain._flags import field_types, literal_choices

__all__ = ["load_config_file", "merge_config", "add_config_file_argument", "config_from_args",
           "check_choices", "CONFIG_FILE_DEST"]

# Namespace attribute of -c/--config (a config dataclass must not have a field of this name).
CONFIG_FILE_DEST = "config"

T = TypeVar("T")


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``.yaml``/``.yml`` or ``.toml`` file into a flat dict with underscore keys."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist; pass an existing YAML or TOML file "
                         "to -c/--config")
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        elif suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib
            with open(path, "rb") as f:
                data = tomllib.load(f)
        else:
            raise ValueError(f"config file {path} must end in .yaml, .yml or .toml, got {suffix!r}")
    except UnicodeDecodeError:
        raise ValueError(f"config file {path} is not a UTF-8 text file; pass a YAML or TOML file to "
                         "-c/--config") from None
    except ValueError:
        raise
    except Exception as exc:  # yaml.YAMLError, tomllib.TOMLDecodeError
        raise ValueError(f"config file {path} could not be parsed: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of option names to values, "
                         f"got a {type(data).__name__}")
    if "config" in data and isinstance(data["config"], dict) and len(data) > 1:
        # A run directory's config.yaml: its options live under "config".
        data = data["config"]
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def merge_config(cls: type[T], *layers: dict[str, Any] | None, source: str = "config") -> T:
    """Build dataclass ``cls`` from ``layers`` (later layers win); unknown keys raise ValueError."""
    values: dict[str, Any] = {}
    for layer in layers:
        if layer:
            _check_keys(cls, layer, source)
            values.update(layer)
    return cls(**values)


def _check_keys(cls: type, layer: Mapping[str, Any], source: str) -> None:
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(layer) - valid)
    if unknown:
        raise ValueError(
            f"unknown {source} option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(valid))}"
        )


def add_config_file_argument(parser: argparse.ArgumentParser) -> argparse.Action:
    """Add ``-c/--config FILE`` (a YAML or TOML file of options, read by :func:`config_from_args`)."""
    return parser.add_argument("-c", "--config", dest=CONFIG_FILE_DEST, metavar="FILE", default=None,
                               help="YAML or TOML file of options with the flag names as keys "
                                    "(flags override it)")


def config_from_args(
    cls: type[T],
    args: argparse.Namespace,
    *,
    base: Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any] | None] | None = None,
    source: str = "config",
) -> T:
    """Build dataclass ``cls`` from defaults < ``base`` < the ``-c/--config`` file < the flags given.

    ``args`` comes from a parser made with :func:`add_config_file_argument` and
    :func:`auxtrain._flags.add_dataclass_arguments` (unset flags are absent from it). ``base`` is a
    mapping of options, or a function that receives the options set by the file and the flags
    (merged, flags winning) and returns one, e.g. the options of a run being resumed. Unknown keys
    in the file or in ``base`` raise ``ValueError`` naming ``source``.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    flags = {k: v for k, v in vars(args).items() if k in names}
    path = getattr(args, CONFIG_FILE_DEST, None)
    from_file = load_config_file(path) if path else {}
    if callable(base):
        _check_keys(cls, from_file, source)  # before base() reads the file's options
        base = base({**from_file, **flags})
    return merge_config(cls, dict(base or {}), from_file, flags, source=source)


def check_choices(config: Any) -> None:
    """ValueError if a ``Literal[...]``-annotated field of dataclass ``config`` is not one of its values."""
    for name, tp in field_types(type(config)).items():
        choices = literal_choices(tp)
        if choices is None:
            continue
        values, optional = choices
        value = getattr(config, name)
        if value in values or (optional and value is None):
            continue
        want = ", ".join(map(str, values))
        raise ValueError(f"{name} must be {'None or ' if optional else ''}one of {want}, got {value!r}")
