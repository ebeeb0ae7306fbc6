"""The run directory: one layout that every command writes and reads.

RUN/
  config.yaml          resolved config (all defaults filled in)
  provenance.json      command, seed, precision, versions of Python / torch / torchvision / selfnas
  status.json          state (running | evaluating | finished | failed | interrupted), step, message,
                       warnings, threads (the torch threads training started with)
  metrics.jsonl        one JSON object per line: kind=step | epoch | eval
  checkpoints/last.safetensors   resumable training state (weights + optimizer + counters)
  checkpoints/previous.safetensors   the checkpoint before it (a torn last one falls back to it)
  model.safetensors    final weights of the whole SSL model (backbone + heads)
  eval.json            kNN and linear-probe results on the held-out splits
  genotype.json        the found architecture (search runs)
  plots/*.png          curves
  .lock                held (flock) by the one process that writes the run; names it
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from selfnas import locks
from selfnas.errors import RunDirError
from selfnas.io import atomic_write_json, atomic_write_text
from selfnas.locks import LOCK_FILE

RUN_MARKERS = ("config.yaml", "status.json")
#: states of status.json that a live process keeps up to date; without one holding the lock, the
#: run was killed (:meth:`RunDir.state` reads them as ``interrupted``)
ACTIVE_STATES = ("running", "evaluating")
#: the found architecture of a search run (and the architecture of a study unit)
GENOTYPE_FILE = "genotype.json"


class RunDir:
    """Paths and small helpers for one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        #: the folders :meth:`prepare` created for this run, deepest (the run's own) first
        self.created: tuple[Path, ...] = ()
        self._lock: locks.FolderLock | None = None

    config = property(lambda self: self.path / "config.yaml")
    provenance = property(lambda self: self.path / "provenance.json")
    status = property(lambda self: self.path / "status.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    checkpoint = property(lambda self: self.path / "checkpoints" / "last.safetensors")
    model = property(lambda self: self.path / "model.safetensors")
    eval = property(lambda self: self.path / "eval.json")
    genotype = property(lambda self: self.path / GENOTYPE_FILE)
    plots = property(lambda self: self.path / "plots")

    def is_run(self) -> bool:
        return any((self.path / m).exists() for m in RUN_MARKERS)

    @classmethod
    def prepare(cls, path: str | Path, resume: bool = False, overwrite: bool = False) -> RunDir:
        """Open ``path`` for a new run, or for resuming one, and take its lock (:meth:`lock`).

        An existing run is refused unless ``resume`` or ``overwrite``; ``overwrite`` only
        deletes directories that look like selfnas runs, never arbitrary folders. A run that
        another live process writes is refused, naming that process.
        """
        run = cls(path)
        if resume and overwrite:
            raise RunDirError("--resume and --overwrite exclude each other; pick one")
        if run.path.exists() and not run.path.is_dir():
            raise RunDirError(f"{run.path} exists and is not a directory; choose another --out")
        if resume and not run.config.exists():
            raise RunDirError(f"{run.path} holds no run to resume (no config.yaml); drop --resume")
        run.created = _missing_folders(run.path)
        try:
            run.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            run.remove_created()
            raise RunDirError(f"cannot write to {run.path}: {exc.strerror}; choose another --out") from None
        try:
            run.lock()
            run._open(resume, overwrite)
        except BaseException:
            run.remove_created()
            raise
        return run

    def _open(self, resume: bool, overwrite: bool) -> None:
        """The checks and clean-up of :meth:`prepare`, under the run's lock."""
        if resume:
            if not self.config.exists():  # removed since prepare looked
                raise RunDirError(f"{self.path} holds no run to resume (no config.yaml); drop --resume")
            self.remove_temp_files()
            return
        entries = [p for p in self.path.iterdir() if p.name != LOCK_FILE]
        if entries:
            if not self.is_run():
                raise RunDirError(
                    f"{self.path} is a non-empty folder that is not a selfnas run; choose another --out"
                )
            if not overwrite:
                raise RunDirError(
                    f"run directory {self.path} exists; pass --resume to continue it or --overwrite"
                )
            for entry in entries:  # the lock file stays: this process holds it
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            self.created = (self.path, *self.created)  # an overwritten run's folder counts as made anew
        try:
            probe = self.path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise RunDirError(f"cannot write to {self.path}: {exc.strerror}; choose another --out") from None

    def lock(self) -> None:
        """Take this run's lock (see :mod:`selfnas.locks`) until :meth:`release`, the end of the
        command (:func:`selfnas.locks.scope`) or this process; :class:`RunDirError` naming the
        holder when another live process writes the run."""
        if self._lock is None or not self._lock.held:
            self._lock = locks.acquire(self.path)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def owner(self) -> dict[str, Any] | None:
        """The live process that holds this run's lock (its pid, host, command, since when), or None."""
        return locks.holder(self.path) if self.path.is_dir() else None

    def state(self) -> str:
        """status.json's state, except that a run recorded as ``running`` or ``evaluating`` that no
        live process holds was killed: ``interrupted``. ``unknown`` without a status."""
        state = self.read_status().get("state")
        if not isinstance(state, str):
            return "unknown"
        if state in ACTIVE_STATES and self.owner() is None:
            return "interrupted"
        return state

    def remove_created(self) -> None:
        """Undo :meth:`prepare` after an early error: release the run's lock, then remove the
        folders it created, the run's own first and then parents such as ``runs/``, each only while
        it is empty. Folders that existed before stay, and so does every folder above one that is
        not empty."""
        self.release()
        for folder in self.created:
            try:
                folder.rmdir()
            except FileNotFoundError:
                continue
            except OSError:  # not empty: something else was written there
                break
        self.created = ()

    def remove_temp_files(self) -> list[Path]:
        """Delete the temp files of atomic writes that a killed process left (``.NAME.*.tmp``, see
        :func:`selfnas.io.atomic_write`); called when a run is resumed, before anything writes."""
        removed = [p for p in self.path.rglob(".*.tmp") if p.is_file()]
        for path in removed:
            path.unlink(missing_ok=True)
        return removed

    def write_status(self, state: str, **fields: Any) -> None:
        current = self.read_status()
        current.update(fields)
        current["state"] = state
        current["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        atomic_write_json(self.status, current)

    def read_status(self) -> dict[str, Any]:
        import json

        if not self.status.exists():
            return {}
        try:
            return json.loads(self.status.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return {}

    def write_text(self, name: str, text: str) -> Path:
        return atomic_write_text(self.path / name, text)


def _missing_folders(path: Path) -> tuple[Path, ...]:
    """``path`` and its parents that do not exist yet, deepest first (absolute paths)."""
    missing = []
    folder = Path(os.path.abspath(path))
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return tuple(missing)
