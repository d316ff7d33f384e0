"""Command-line flags generated from a dataclass, so that every option is declared once.

``add_dataclass_arguments(parser, cls)`` adds one flag per field of ``cls``. Everything about a
flag comes from the field: its name (``data_root`` -> ``--data-root``), its type annotation and its
``metadata``::

    @dataclass
    class EvalConfig:
        data_root: str | None = field(default=None, metadata={
            "help": "the -C folder", "group": "data", "metavar": "DIR"})
        mode: Literal["fast", "full"] = field(default="fast", metadata={"help": "how much to run"})
        progress: bool = field(default=True, metadata={"help": "progress bar"})

Annotations: ``int``, ``float``, ``str``, ``bool`` (a ``--x/--no-x`` pair), ``typing.Literal[...]``
(the flag's ``choices``) and any of them ``| None``. Metadata keys, all optional:

- ``help``: plain text (no ``%`` formatting); the default is appended as ``(default: VALUE)``
  (``on``/``off`` for bools), except for ``None`` defaults, whose meaning the help should state.
- ``default_text``: what the parentheses show instead, e.g. ``"default per dataset: shapes 12"``.
- ``group``: title of the argument group, created on first use (fields keep their order).
- ``metavar``, ``nargs``, ``const``, ``type``, ``choices``: passed to ``add_argument``, overriding
  what the annotation implies (e.g. ``"nargs": "?", "const": "bf16"`` for an optional value).
- ``flag``: a long flag other than the kebab-case field name; ``short``: an extra short flag.
- ``cli``: ``False`` leaves the field out (config files only). Avoid it: a field without a flag
  cannot be changed from the command line.

Unset flags are absent from the parsed namespace (``default=argparse.SUPPRESS``), so that the
layers below the flags (defaults, a resumed run, a config file) apply: see
:func:`auxtrain.config.config_from_args`. This module imports nothing heavy, so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Literal, Union

__all__ = ["add_dataclass_arguments", "field_types", "literal_choices", "flag_name"]

_PASSED_THROUGH = ("metavar", "nargs", "const", "type", "choices")
_KNOWN_KEYS = {"help", "default_text", "group", "flag", "short", "cli", *_PASSED_THROUGH}


def field_types(cls: type) -> dict[str, Any]:
    """The evaluated annotation of every field of dataclass ``cls`` (string annotations resolved)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _split_optional(tp: Any) -> tuple[Any, bool]:
    """(``X``, True) for ``X | None`` / ``Optional[X]``; (``tp``, False) otherwise."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == len(typing.get_args(tp)) - 1:
            return (args[0] if len(args) == 1 else Union[tuple(args)]), True  # noqa: UP007
    return tp, False


def literal_choices(tp: Any) -> tuple[tuple[Any, ...], bool] | None:
    """For ``Literal[a, b]`` (or ``Literal[a, b] | None``): ``((a, b), optional)``; else ``None``."""
    inner, optional = _split_optional(tp)
    if typing.get_origin(inner) is Literal:
        return typing.get_args(inner), optional
    return None


def flag_name(f: dataclasses.Field) -> str:
    """The long flag of field ``f``: ``metadata["flag"]`` or ``--`` + the kebab-case field name."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _describe_default(f: dataclasses.Field, is_bool: bool) -> str:
    if "default_text" in f.metadata:
        return f" ({f.metadata['default_text']})"
    default = f.default
    if default is dataclasses.MISSING or default is None:
        return ""
    if is_bool:
        return f" (default: {'on' if default else 'off'})"
    return f" (default: {default})"


def _argument_kwargs(f: dataclasses.Field, tp: Any, owner: str) -> dict[str, Any]:
    """``add_argument`` keywords for field ``f`` of annotation ``tp`` (without help and names)."""
    inner, _ = _split_optional(tp)
    literal = literal_choices(tp)
    kw: dict[str, Any] = {}
    if inner is bool:
        kw["action"] = argparse.BooleanOptionalAction
    elif literal is not None:
        values = literal[0]
        kinds = {type(v) for v in values}
        if len(kinds) != 1 or kinds.pop() not in (str, int, float):
            raise TypeError(f"{owner}.{f.name}: Literal values must all be str, int or float, got {values!r}")
        kw["choices"] = list(values)
        kw["type"] = type(values[0])
    elif inner in (int, float, str):
        kw["type"] = inner
    elif "type" not in f.metadata:
        raise TypeError(f"{owner}.{f.name}: no command-line flag for the annotation {tp!r}; use int, float, "
                        "str, bool or Literal[...] (optionally | None), or set metadata 'type'")
    for key in _PASSED_THROUGH:
        if key in f.metadata:
            kw[key] = f.metadata[key]
    return kw


def _group(parser: argparse.ArgumentParser, title: str | None, made: dict[str, Any]):
    if title is None:
        return parser
    if title not in made:
        existing = [g for g in parser._action_groups if g.title == title]
        made[title] = existing[0] if existing else parser.add_argument_group(title)
    return made[title]


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> list[argparse.Action]:
    """Add one flag per field of dataclass ``cls`` to ``parser`` (see the module docstring).

    Each flag's ``dest`` is the field name and its default ``argparse.SUPPRESS``: only the flags
    given on the command line appear in the parsed namespace. Returns the added actions.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = field_types(cls)
    groups: dict[str, Any] = {}
    actions = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        unknown = set(meta) - _KNOWN_KEYS
        if unknown:
            raise TypeError(f"{cls.__name__}.{f.name}: unknown metadata key(s) {', '.join(sorted(unknown))}; "
                            f"valid: {', '.join(sorted(_KNOWN_KEYS))}")
        if meta.get("cli", True) is False:
            continue
        kw = _argument_kwargs(f, hints[f.name], cls.__name__)
        is_bool = kw.get("action") is argparse.BooleanOptionalAction
        help_text = meta.get("help", "") + _describe_default(f, is_bool)
        names = [flag_name(f), *([meta["short"]] if "short" in meta else [])]
        group = _group(parser, meta.get("group"), groups)
        action = group.add_argument(*names, dest=f.name, default=argparse.SUPPRESS, **kw)
        # Set after creation: some Python versions' BooleanOptionalAction append their own default.
        action.help = help_text.strip().replace("%", "%%") or None
        actions.append(action)
    return actions
