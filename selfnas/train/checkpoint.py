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
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, extra: dict[str, Any]
) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_state = optimizer.state_dict()
    for index, state in opt_state["state"].items():
        for key, value in state.items():
            if not torch.is_tensor(value):
                value = torch.tensor(value)
            tensors[f"optim.{index}.{key}"] = value
    metadata = {
        "format": FORMAT,
        "optim_groups": json.dumps(opt_state["param_groups"]),
        "extra": json.dumps(extra),
    }
    tensors = _contiguous(tensors)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model and optimizer in place; return the ``extra`` counters."""
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
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["optim_groups"])})
    return json.loads(metadata["extra"])
