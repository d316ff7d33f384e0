"""A run's initial weights (``fit --init PATH``, ``--init-exclude``, ``--pretrained``) and ``--model-kwargs``.

``--init`` loads a plain state_dict into the backbone before training: a torchvision or timm
checkpoint, an auxtrain export (``model_plain.pt``), or one wrapped as ``{"state_dict": ...}`` /
``{"model": ...}`` (``.safetensors`` files too). Loading is strict: a key the model lacks, a model
key the file lacks, or a tensor of another shape is an error listing them all, unless
``--init-exclude`` patterns skip those keys (e.g. ``fc.*`` for a classifier with another class
count, which then keeps its fresh initialisation). ``--pretrained`` uses timm's / torchvision's
own loading (:mod:`auxtrain.models.pretrained`). The source and its sha256 go into config.yaml.

The option checks (:func:`check_start_options`) import nothing heavy, so ``fit`` validates them
before it builds anything.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import os
from pathlib import Path
from typing import Any

__all__ = ["parse_model_kwargs", "check_start_options", "read_state_dict", "read_weights", "load_weights",
           "sha256_of", "start_weights", "pretrained_record"]

_WRAPPERS = ("state_dict", "model", "module", "state_dict_ema", "model_ema")


def parse_model_kwargs(spec: str | dict | None, flag: str = "--model-kwargs") -> dict[str, Any]:
    """``"drop_rate=0.1,img_size=32"`` -> ``{"drop_rate": 0.1, "img_size": 32}`` (values: Python literals).

    A mapping (from a config file) is returned as a dict; a value that is not a literal stays a string.
    """
    if spec is None or spec == "":
        return {}
    if isinstance(spec, dict):
        return dict(spec)
    out: dict[str, Any] = {}
    for item in _split_top_level(str(spec)):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"{flag} {spec!r}: {item.strip()!r} is not KEY=VALUE; pass comma-separated "
                             "options such as 'drop_rate=0.1,img_size=32'")
        try:
            out[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key] = value.strip()
    return out


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets, so ``img_size=(32, 32)`` stays one item."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item for item in items if item.strip()]


def check_start_options(cfg: Any) -> None:
    """``--model-kwargs``, ``--init``, ``--init-exclude`` and ``--pretrained`` of a resolved TrainConfig."""
    parse_model_kwargs(cfg.model_kwargs)
    if cfg.init is not None and cfg.pretrained:
        raise ValueError("--init and --pretrained both set the starting weights; pass one of them")
    if cfg.init_exclude and cfg.init is None:
        raise ValueError("--init-exclude selects keys of the --init file; pass --init PATH too, or drop it")
    if cfg.pretrained and not (cfg.model.startswith(("timm/", "tv_"))):
        raise ValueError(f"--pretrained loads timm's or torchvision's weights: --model {cfg.model} has none; "
                         "use a timm/* or tv_* model, or --init PATH with your own weights file")
    if cfg.init is not None and not cfg.resume:  # a resumed run takes its weights from the checkpoint
        path = Path(cfg.init)
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise ValueError(f"--init {cfg.init} {what}; pass a weights file (a state_dict saved with "
                             "torch.save, a .safetensors file, or an auxtrain model_plain.pt)")


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: str | os.PathLike, flag: str = "--init") -> dict[str, Any]:
    """The tensors of a weights file, unwrapped from ``{"state_dict": ...}``-style containers.

    Reads ``torch.save`` files with ``weights_only=True`` (no code runs) and ``.safetensors`` files;
    a ``module.`` prefix on every key (a DistributedDataParallel save) is removed.
    """
    return read_weights(path, flag)[0]


def read_weights(path: str | os.PathLike, flag: str = "--init") -> tuple[dict[str, Any], dict[str, Any]]:
    """(state_dict, metadata) of a weights file; the metadata of an auxtrain export, else ``{}``."""
    import torch

    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ValueError(f"{flag} {path} {what}; pass a weights file (a state_dict saved with torch.save, a "
                         ".safetensors file, or an auxtrain model_plain.pt)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data: Any = load_file(str(path))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, truncated, an unsafe pickle, ...
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ValueError(f"{flag} {path}: not a readable weights file ({type(exc).__name__}: {first}); pass "
                         "a state_dict saved with torch.save, a .safetensors file or an auxtrain "
                         "model_plain.pt"
                         ) from None
    meta = data.get("meta") if isinstance(data, dict) and data.get("format") == "auxtrain.model" else None
    for _ in range(3):  # {"state_dict": {...}}, {"model": {"state_dict": ...}}, ...
        if isinstance(data, dict) and not _is_state_dict(data):
            inner = next((data[k] for k in _WRAPPERS if isinstance(data.get(k), dict)), None)
            if inner is None:
                break
            data = inner
    if not isinstance(data, dict) or not _is_state_dict(data):
        keys = list(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{flag} {path}: no state_dict found (top level: {keys}); save model.state_dict(), "
                         f"or a dict holding it under one of {list(_WRAPPERS)}")
    if data and all(k.startswith("module.") for k in data):
        data = {k[len("module."):]: v for k, v in data.items()}
    return dict(data), dict(meta or {})


def _is_state_dict(data: dict) -> bool:
    import torch

    return bool(data) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items())


def _excluded(key: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _listing(title: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
    return f"{title}: {shown}" if keys else ""


def load_weights(model: Any, state: dict[str, Any], exclude: list[str] | tuple[str, ...] = (),
                 source: str = "the weights", flag: str = "--init") -> list[str]:
    """Load ``state`` into ``model`` strictly, except keys matching an ``exclude`` pattern; returns them.

    Raises ValueError listing every unexpected, missing and mis-shaped key, and how to skip them.
    """
    exclude = list(exclude)
    skipped = sorted(k for k in state if _excluded(k, exclude))
    state = {k: v for k, v in state.items() if k not in set(skipped)}
    own = model.state_dict()
    mis_shaped = [f"{k} {tuple(v.shape)} vs the model's {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    problems = None
    if not mis_shaped:
        result = model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not _excluded(k, exclude)]
        unexpected = list(result.unexpected_keys)
        if missing or unexpected:
            problems = (unexpected, missing)
    else:
        problems = ([k for k in state if k not in own],
                    [k for k in own if k not in state and not _excluded(k, exclude)
                     and not k.endswith("num_batches_tracked")])
    if problems is not None:
        unexpected, missing = problems
        bad = [m.split(" ")[0] for m in mis_shaped]
        roots = sorted({k.rsplit(".", 1)[0] + ".*" for k in bad + unexpected + missing})
        parts = [p for p in (_listing("keys the model lacks", unexpected),
                             _listing("model keys the file lacks", missing),
                             _listing("tensors of another shape", mis_shaped)) if p]
        raise ValueError(f"{flag} {source} does not fit {type(model).__name__}: " + "; ".join(parts)
                         + ". Check --model; to skip keys (e.g. a classifier with another class count, "
                         f"which then starts fresh) pass --init-exclude '{','.join(roots[:4])}'")
    return skipped


def start_weights(model: Any, cfg: Any) -> dict[str, Any]:
    """Apply ``cfg.init`` to ``model`` (``--pretrained`` was applied when it was built); returns the record.

    Resumed runs load nothing (the checkpoint holds the weights) and keep the record of their start.
    """
    if cfg.resume:
        return _previous_record(cfg.out)
    if cfg.init is not None:
        exclude = [p.strip() for p in (cfg.init_exclude or "").split(",") if p.strip()]
        skipped = load_weights(model, read_state_dict(cfg.init), exclude, source=str(cfg.init))
        return {"init": {"source": str(Path(cfg.init).resolve()), "sha256": sha256_of(cfg.init),
                         "exclude": exclude, "skipped_keys": skipped}}
    if cfg.pretrained:
        return {"init": {"pretrained": True, **pretrained_record(cfg.model)}}
    return {}


def _previous_record(out: str | os.PathLike) -> dict[str, Any]:
    import yaml

    from auxtrain.run_dir import RunDir

    path = Path(out) / RunDir.CONFIG
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f) or {}
    return {"init": doc["init"]} if "init" in doc else {}


def pretrained_record(model_name: str) -> dict[str, Any]:
    """What ``pretrained=True`` loaded for ``model_name``: ``{"source", "file", "sha256"}`` where known."""
    from auxtrain.models.pretrained import torchvision_cache_file, torchvision_weights

    file = None
    if model_name.startswith("tv_"):
        weights = torchvision_weights(model_name[3:])
        source, file = f"torchvision {weights}", torchvision_cache_file(weights)
    else:
        import timm

        cfg = timm.get_pretrained_cfg(model_name.removeprefix("timm/"))
        source = f"timm {getattr(cfg, 'hf_hub_id', None) or getattr(cfg, 'url', None) or model_name}"
        if cfg is not None and cfg.file:
            file = Path(cfg.file)
        elif cfg is not None and cfg.hf_hub_id:
            from huggingface_hub import try_to_load_from_cache

            for filename in ("model.safetensors", "pytorch_model.bin"):
                found = try_to_load_from_cache(cfg.hf_hub_id, filename)
                if isinstance(found, str):
                    file = Path(found)
                    break
    record: dict[str, Any] = {"source": source}
    if file is not None and file.is_file():
        record.update(file=str(file), sha256=sha256_of(file))
    return record
