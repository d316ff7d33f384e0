"""Training checkpoints: atomic round trip and clear errors for damaged files."""

from __future__ import annotations

import pytest
import torch

from auxtrain.checkpoint import load_checkpoint, save_checkpoint


def _state():
    return {"epoch": 2, "step": 0, "model": {"w": torch.arange(4.0)}, "optimizer": {}, "config": {"a": 1},
            "rng": {"torch": torch.get_rng_state()}}


def test_checkpoint_round_trip(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", _state())
    state = load_checkpoint(path)
    assert state["epoch"] == 2 and torch.equal(state["model"]["w"], torch.arange(4.0))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not_a_dict", "missing_key"])
def test_damaged_checkpoint_raises_a_clear_error_naming_the_file(tmp_path, damage):
    path = save_checkpoint(tmp_path / "c.pt", _state())
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif damage == "not_a_dict":
        torch.save([1, 2, 3], path)
    else:
        state = _state()
        del state["optimizer"]
        torch.save(state, path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=str(path).replace(".", r"\.")):
        load_checkpoint(path)
    assert path.read_bytes() == before
