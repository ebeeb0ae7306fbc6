"""Resumable checkpoints in one safetensors file, written atomically; the one before is kept.

Tensors: ``model.<name>`` for the model's state dict, ``optim.<param index>.<key>`` for
optimizer state. Metadata (strings): the format tag, the optimizer's param-group settings
and a JSON ``extra`` dict of counters, all of which JSON round-trips exactly.

Two checkpoints: before a new ``last.safetensors`` is written, the current one becomes
``previous.safetensors`` (a hard link: no copy, no extra space while both are the same). When
the latest is torn or unreadable (a kill mid-write on a file system that does not honour the
atomic rename), :func:`load_checkpoint` falls back to the previous one with a warning; training
replays deterministically from there, so the run still ends as an uninterrupted one.

A full or read-only disk while writing is an :class:`OSError` naming the file (safetensors
reports it as a ``SafetensorError``, which is translated).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from selfnas import distributed
from selfnas.errors import RunDirError
from selfnas.io import atomic_write
from selfnas.rundir import RunDir

FORMAT = "selfnas-checkpoint-1"
_OS_ERROR = re.compile(r"os error (\d+)")


class UnreadableCheckpoint(RunDirError):
    """A checkpoint file that cannot be read (torn, truncated, not a selfnas checkpoint)."""


def previous_path(path: str | Path) -> Path:
    """Where the checkpoint before ``path`` is kept: ``previous.safetensors`` beside ``last``."""
    path = Path(path)
    stem = "previous" if path.stem == "last" else f"{path.stem}.previous"
    return path.with_name(stem + path.suffix)


def _write_safetensors(path: Path, write: Callable[[str], None]) -> None:
    """``atomic_write`` of a safetensors file; an I/O error safetensors reports as text becomes the
    :class:`OSError` it was, naming ``path``."""

    def checked(tmp: str) -> None:
        try:
            write(tmp)
        except SafetensorError as exc:
            found = _OS_ERROR.search(str(exc))
            if found is None:
                raise
            code = int(found.group(1))
            raise OSError(code, os.strerror(code), str(path)) from None

    atomic_write(path, checked)


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}


def save_weights(path: str | Path, module: nn.Module, metadata: dict[str, str] | None = None) -> None:
    """A module's state dict as safetensors (atomic)."""
    tensors = _contiguous(module.state_dict())
    _write_safetensors(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


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
    """Model, every named optimizer (``weights``, ``arch``, ...) and the counters in ``extra``; the
    checkpoint that was at ``path`` becomes :func:`previous_path`."""
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
    path = Path(path)
    if path.is_file():
        _keep_previous(path)
    _write_safetensors(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _keep_previous(path: Path) -> None:
    """Make :func:`previous_path` the file now at ``path``: a hard link renamed into place (a copy
    on a file system without hard links), so a kill at any moment leaves both files whole."""
    _place(path, previous_path(path), "link")


def _place(source: Path, target: Path, tag: str) -> None:
    """Put ``source``'s content at ``target`` atomically: a hard link renamed into place, or a copy
    written atomically on a file system without hard links."""
    tmp = target.with_name(f".{target.name}.{tag}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        atomic_write(target, lambda t: _copy(source, t))
        return
    os.replace(tmp, target)


def _copy(source: Path, target: str) -> None:
    with open(source, "rb") as src, open(target, "wb") as dst:
        while block := src.read(1 << 20):
            dst.write(block)


def load_checkpoint(
    path: str | Path, model: nn.Module, optimizers: dict[str, torch.optim.Optimizer]
) -> dict[str, Any]:
    """Restore model and optimizers in place; return the ``extra`` counters. A torn or unreadable
    ``path`` falls back to :func:`previous_path` with a warning, which then becomes the latest."""
    path = Path(path)
    try:
        metadata, tensors = _read(path)
    except UnreadableCheckpoint as latest:
        previous = previous_path(path)
        if not previous.is_file():
            raise
        try:
            metadata, tensors = _read(previous)
        except UnreadableCheckpoint:
            raise RunDirError(
                f"both checkpoints {path} and {previous} are unreadable; start again with --overwrite"
            ) from None
        _fall_back(path, previous, latest, json.loads(metadata["extra"]).get("step"))
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


def _read(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and tensors of a checkpoint; :class:`UnreadableCheckpoint` when it is torn,
    truncated or not a selfnas checkpoint."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise UnreadableCheckpoint(
            f"checkpoint {path} is unreadable ({exc}); start again with --overwrite"
        ) from None
    if metadata.get("format") != FORMAT:
        raise UnreadableCheckpoint(f"checkpoint {path} is not a {FORMAT} file; start again with --overwrite")
    try:
        json.loads(metadata["optim_groups"])
        json.loads(metadata["extra"])
    except (KeyError, json.JSONDecodeError):
        raise UnreadableCheckpoint(
            f"checkpoint {path} has damaged metadata; start again with --overwrite"
        ) from None
    return metadata, tensors


def _fall_back(path: Path, previous: Path, why: Exception, step: Any) -> None:
    """Warn (stderr, and status.json when ``path`` is a run's checkpoint) and make the previous
    checkpoint the latest again, so the next save keeps it as the previous one."""
    warning = (
        f"the latest checkpoint {path.name} is unreadable ({why}); resumed from the previous one "
        f"({previous.name}, step {step}): the steps after it are trained again"
    )
    print(f"warning: {warning}", file=sys.stderr, flush=True)
    if not distributed.is_main():
        return
    _place(previous, path, "restore")
    run = RunDir(path.parent.parent)
    if path.parent.name == "checkpoints" and run.status.is_file():
        status = run.read_status()
        warnings = [*status.get("warnings", []), warning]
        run.write_status(str(status.get("state", "running")), warnings=warnings)
