"""Resumable checkpoints in one safetensors file, written atomically.

Tensors: ``model.<name>`` for the model's state dict, ``optim.<param index>.<key>`` for
optimizer state. Metadata (strings): the format tag, the optimizer's param-group settings
and a JSON ``extra`` dict of counters, all of which JSON round-trips exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from selfnas.errors import RunDirError
from selfnas.io import atomic_write

FORMAT = "selfnas-checkpoint-1"


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}


def save_weights(path: str | Path, module: nn.Module, metadata: dict[str, str] | None = None) -> None:
    """A module's state dict as safetensors (atomic)."""
    tensors = _contiguous(module.state_dict())
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_weights(path: str | Path, module: nn.Module) -> None:
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise RunDirError(f"cannot read weights {path}: {exc}; the file is missing or corrupt") from None
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RunDirError(
            f"weights {path} do not fit this model "
            f"({len(missing)} missing, {len(unexpected)} unexpected keys); "
            "was it made with another config?"
        )


def save_checkpoint(
    path: str | Path, model: nn.Module, optimizers: dict[str, torch.optim.Optimizer], extra: dict[str, Any]
) -> None:
    """Model, every named optimizer (``weights``, ``arch``, ...) and the counters in ``extra``."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    groups = {}
    for name, optimizer in optimizers.items():
        opt_state = optimizer.state_dict()
        groups[name] = opt_state["param_groups"]
        for index, state in opt_state["state"].items():
            for key, value in state.items():
                if not torch.is_tensor(value):
                    value = torch.tensor(value)
                tensors[f"optim.{name}.{index}.{key}"] = value
    metadata = {"format": FORMAT, "optim_groups": json.dumps(groups), "extra": json.dumps(extra)}
    tensors = _contiguous(tensors)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_checkpoint(
    path: str | Path, model: nn.Module, optimizers: dict[str, torch.optim.Optimizer]
) -> dict[str, Any]:
    """Restore model and optimizers in place; return the ``extra`` counters."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise RunDirError(f"checkpoint {path} is unreadable ({exc}); start again with --overwrite") from None
    if metadata.get("format") != FORMAT:
        raise RunDirError(f"checkpoint {path} is not a {FORMAT} file; start again with --overwrite")
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(model_state, strict=True)
    groups = json.loads(metadata["optim_groups"])
    if set(groups) != set(optimizers):
        raise RunDirError(
            f"checkpoint {path} holds optimizers {sorted(groups)}, expected {sorted(optimizers)}"
        )
    states: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in optimizers}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, name, index, field = key.split(".", 3)
            states[name].setdefault(int(index), {})[field] = value
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict({"state": states[name], "param_groups": groups[name]})
    return json.loads(metadata["extra"])
