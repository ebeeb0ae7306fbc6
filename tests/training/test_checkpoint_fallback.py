"""Two checkpoints are kept; a torn latest one (a kill mid-write where the rename is not atomic)
falls back to the previous one with a warning, and the resumed run ends as an uninterrupted one."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from selfnas.config import build_config
from selfnas.errors import RunDirError
from selfnas.io import read_jsonl
from selfnas.rundir import RunDir
from selfnas.training import checkpoint
from selfnas.training.checkpoint import load_checkpoint, previous_path
from selfnas.training.trainer import Trainer

# 14 steps, 7 an epoch, a checkpoint every 3 steps and at each epoch's end: 3, 6, 7, 9, 12, 14
KILLED_AT, PREVIOUS = 9, 7


def fit(path, overrides, resume=False):
    trainer = Trainer(build_config(overrides=overrides), RunDir.prepare(path, resume=resume), quiet=True)
    trainer.fit(resume=resume)
    return trainer


def step_of(path) -> int:
    with safe_open(str(path), framework="pt") as fh:
        return json.loads(fh.metadata()["extra"])["step"]


def killed_after_checkpoint(monkeypatch, path, overrides) -> None:
    """Train until the checkpoint of step KILLED_AT is in place, then stop as a kill would."""
    save, write = checkpoint.save_file, checkpoint.atomic_write
    saving = {}

    def save_recording(tensors, filename, metadata=None):
        saving["step"] = json.loads(metadata["extra"])["step"]
        save(tensors, filename, metadata=metadata)

    def write_then_die(target, writer):
        done = write(target, writer)
        if saving.get("step") == KILLED_AT:
            raise KeyboardInterrupt
        return done

    monkeypatch.setattr(checkpoint, "save_file", save_recording)
    monkeypatch.setattr(checkpoint, "atomic_write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit(path, overrides)
    monkeypatch.setattr(checkpoint, "save_file", save)
    monkeypatch.setattr(checkpoint, "atomic_write", write)


def test_each_save_keeps_the_one_before(monkeypatch, tmp_path, tiny_overrides):
    run = tmp_path / "run"
    killed_after_checkpoint(monkeypatch, run, tiny_overrides)
    last = RunDir(run).checkpoint
    assert step_of(last) == KILLED_AT and step_of(previous_path(last)) == PREVIOUS


def test_torn_latest_checkpoint_resumes_from_the_previous_to_the_same_result(
    monkeypatch, capsys, tmp_path, tiny_overrides
):
    overrides = [*tiny_overrides, "method.name=byol"]
    fit(tmp_path / "full", overrides)
    killed_after_checkpoint(monkeypatch, tmp_path / "torn", overrides)
    last = RunDir(tmp_path / "torn").checkpoint
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # torn: the kill landed mid-write, the rename was not atomic
    capsys.readouterr()
    fit(tmp_path / "torn", overrides, resume=True)

    err = capsys.readouterr().err
    assert "warning: the latest checkpoint last.safetensors is unreadable" in err
    assert f"resumed from the previous one (previous.safetensors, step {PREVIOUS})" in err
    status = json.loads((tmp_path / "torn" / "status.json").read_text())
    assert status["state"] == "finished" and any("previous.safetensors" in w for w in status["warnings"])
    full = load_file(str(tmp_path / "full" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "torn" / "model.safetensors"))
    assert full.keys() == resumed.keys() and all(torch.equal(full[k], resumed[k]) for k in full)

    def losses(name):
        return [(r["step"], r["loss"]) for r in read_jsonl(tmp_path / name / "metrics.jsonl")]

    assert losses("full") == losses("torn")


def test_both_checkpoints_unreadable_is_one_line(monkeypatch, tmp_path, tiny_overrides):
    run = tmp_path / "run"
    killed_after_checkpoint(monkeypatch, run, tiny_overrides)
    last = RunDir(run).checkpoint
    for path in (last, previous_path(last)):
        path.write_bytes(b"\0" * 64)
    trainer = Trainer(build_config(overrides=tiny_overrides), RunDir(run), quiet=True)
    with pytest.raises(RunDirError, match="both checkpoints .* are unreadable; start again with --overwrite"):
        load_checkpoint(last, trainer.model, trainer.optimizers)
