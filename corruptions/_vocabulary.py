"""The corruption vocabulary: subset and family names, name lists and severity specs.

Every place that reads a user's corruption or severity spec (the CLI, the training views, the
evaluation, ``make_c``, the transforms) calls these functions, so the grammar and its error
messages live here once. The names and families themselves are declared in ``_registry``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ._registry import ALL_NAMES, BENCHMARK_FAMILIES, FAMILIES, FAMILY_OF

__all__ = ["SUBSETS", "get_corruption_names", "resolve_names", "family_of", "canonical_order",
           "parse_severities"]

SEVERITIES = (1, 2, 3, 4, 5)
# Subset names besides the families; "validation" is imagecorruptions' name for "extra".
_GROUPS = {
    "common": tuple(name for family in BENCHMARK_FAMILIES for name in FAMILIES[family]),
    "all": ALL_NAMES,
    "validation": FAMILIES["extra"],
}
SUBSETS: dict[str, tuple[str, ...]] = {**_GROUPS, **FAMILIES}
_ORDER = {name: i for i, name in enumerate(ALL_NAMES)}


def _valid_tokens() -> str:
    return f"subsets {', '.join(SUBSETS)} or names {', '.join(ALL_NAMES)}"


def get_corruption_names(subset: str = "common") -> list[str]:
    """Corruption names of one ``subset``, in the canonical CIFAR-C order.

    ``subset``: "common" (the 15 benchmark corruptions), "extra" (the 4 extra ones; alias
    "validation" as in imagecorruptions), "all" (19), or a family: "noise", "blur", "weather",
    "digital".
    """
    if not isinstance(subset, str) or subset not in SUBSETS:
        raise ValueError(f"subset={subset!r} is not a corruption subset; use one of {list(SUBSETS)}")
    return list(SUBSETS[subset])


def resolve_names(spec: str | Iterable[str] | None, *, what: str = "corruptions") -> list[str]:
    """Corruption names from a spec, once each, in the canonical order.

    ``spec`` is a name, a family, "common" / "extra" / "all", a comma-separated mix of these, or a
    sequence of such items; None means all 19. ``what`` names the option in error messages
    (e.g. ``"--eval-corruptions"``). Unknown items raise ValueError listing the valid tokens.
    """
    if spec is None:
        return list(ALL_NAMES)
    if isinstance(spec, str):
        items = spec.split(",")
    else:
        try:
            items = list(spec)
        except TypeError:
            raise TypeError(f"{what} must be a string like 'noise,fog' or a list of names, "
                            f"got {type(spec).__name__}") from None
    names: set[str] = set()
    for raw in items:
        if not isinstance(raw, str):
            raise TypeError(f"{what}={raw!r} is not a string; use {_valid_tokens()}")
        item = raw.strip().lower()
        if not item:
            continue
        if item in SUBSETS:
            names.update(SUBSETS[item])
        elif item in FAMILY_OF:
            names.add(item)
        else:
            raise ValueError(f"{what}={raw.strip()!r} is neither a corruption nor a subset; use "
                             f"{_valid_tokens()}")
    if not names:
        raise ValueError(f"{what}={spec!r} names no corruption; pass e.g. 'all', 'noise' or 'fog,contrast'")
    return canonical_order(names)


def family_of(name: str) -> str:
    """The family of a corruption: "noise", "blur", "weather", "digital" or "extra"."""
    try:
        return FAMILY_OF[name]
    except (KeyError, TypeError):
        raise ValueError(f"{name!r} is not a corruption; use one of {', '.join(ALL_NAMES)}") from None


def canonical_order(names: Iterable[str]) -> list[str]:
    """``names`` sorted in the benchmark order (names that are not corruptions last, alphabetically)."""
    return sorted(names, key=lambda n: (_ORDER.get(n, len(_ORDER)), n))


def parse_severities(spec: str | int | Sequence[int], *, what: str = "severities") -> tuple[int, ...]:
    """Sorted severities from ``"1-5"``, ``"3"``, ``"1,3,5"``, ``"1-2,5"``, an int or a sequence of ints.

    Values must lie in 1..5 and appear once; ``what`` names the option in error messages.
    """
    if isinstance(spec, bool):
        raise TypeError(f"{what} must be a string like '1-5', an int or ints, got {spec!r}")
    if isinstance(spec, int):
        values = [spec]
    elif isinstance(spec, str):
        values = []
        for item in filter(None, spec.replace(" ", "").split(",")):
            lo, sep, hi = item.partition("-")
            try:
                a = int(lo)
                b = int(hi) if sep else a
            except ValueError:
                raise ValueError(f"{what}={spec!r} is not valid; use a range '1-5', one value '3' or a "
                                 "list '1,3,5'") from None
            if b < a:
                raise ValueError(f"{what}={spec!r}: range {item!r} is descending; write it as '{b}-{a}'")
            values.extend(range(a, b + 1))
    elif isinstance(spec, Sequence) and all(isinstance(v, int) and not isinstance(v, bool) for v in spec):
        values = [int(v) for v in spec]
    else:
        raise TypeError(f"{what} must be a string like '1-5', an int or ints, got {spec!r}")
    if not values:
        raise ValueError(f"{what}={spec!r} is empty; use e.g. '1-5'")
    bad = sorted({v for v in values if v not in SEVERITIES})
    if bad:
        raise ValueError(f"{what}={spec!r}: {bad} outside 1..5; use severities from 1 to 5")
    if len(set(values)) != len(values):
        raise ValueError(f"{what}={spec!r} lists a severity twice")
    return tuple(sorted(values))
