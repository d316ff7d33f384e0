"""Published baseline errors shipped with auxtrain, by name (``--baseline alexnet``).

``alexnet``: AlexNet's ImageNet-C errors (Hendrycks & Dietterich, ICLR 2019), the denominators of
ImageNet-C's official mCE and relative mCE. The numbers and their sources are in
``baseline_data/alexnet_imagenet_c.json`` (package data); :func:`load_baseline` turns them into
a per-corruption table in percent (columns corruption, error; no severity column, since only
the mean over severities 1-5 is published), which :func:`auxtrain.metrics.mce` reads as such.
"""

from __future__ import annotations

import json
from importlib import resources

import pandas as pd

__all__ = ["BASELINES", "load_baseline", "is_baseline_name"]

BASELINES = {"alexnet": "alexnet_imagenet_c.json"}


def is_baseline_name(source: object) -> bool:
    """Whether ``source`` (a --baseline value) names a shipped baseline rather than a path."""
    return isinstance(source, str) and source.lower() in BASELINES


def load_baseline(name: str) -> pd.DataFrame:
    """The shipped baseline ``name`` as a per-corruption error table in percent, with its clean row."""
    key = name.lower()
    if key not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; shipped baselines: {', '.join(BASELINES)} (or pass "
                         "a report folder or errors.csv)")
    path = resources.files("auxtrain").joinpath("baseline_data", BASELINES[key])
    data = json.loads(path.read_text("utf-8"))
    scale = 100.0 if data["units"] == "fraction" else 1.0
    rows = [("clean", scale * data["clean_error"])]
    rows += [(c, scale * e) for c, e in data["corruption_errors"].items()]
    table = pd.DataFrame(rows, columns=["corruption", "error"])
    table.attrs["baseline"] = key
    return table
