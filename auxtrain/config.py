"""Config files for commands: YAML or TOML, layered as defaults < file < command-line flags.

A config file is a flat mapping from option names to values, e.g. ``epochs: 30`` or
``data-root = "data"``; keys may use dashes or underscores. Unknown keys are rejected with the
list of valid names, so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["load_config_file", "merge_config"]

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
    valid = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for layer in layers:
        if not layer:
            continue
        unknown = sorted(set(layer) - valid)
        if unknown:
            raise ValueError(
                f"unknown {source} option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(valid))}"
            )
        values.update(layer)
    return cls(**values)
