"""The study directory: what is finished, and who is working on what.

    DIR/plan.json                     the pinned plan (written once)
    DIR/archs/<unit>/                 one run directory per pretraining (model.safetensors when done)
    DIR/cells/<arch>.<scenario>.json  one probe result per (architecture, scenario), written atomically
    DIR/locks/<unit>.lock             held (flock) by the process working on that unit
    DIR/failed/<unit>.txt             why a unit failed in the current invocation

A finished pretraining or cell is never redone. Units are claimed as in every work folder
(:class:`selfnas.workdir.WorkDir`): a killed worker's unit is free again at once, and two live
workers never run the same unit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selfnas.rundir import RunDir
from selfnas.studies.plan import Unit
from selfnas.workdir import WorkDir


class StudyDir(WorkDir):
    """Paths and finished-work checks for one study directory."""

    provenance = property(lambda self: self.path / "provenance.json")
    summary = property(lambda self: self.path / "summary.json")
    results = property(lambda self: self.path / "results.jsonl")
    markdown = property(lambda self: self.path / "study.md")
    plots = property(lambda self: self.path / "plots")
    cells = property(lambda self: self.path / "cells")

    def run(self, unit: Unit) -> RunDir:
        return RunDir(self.path / "archs" / unit.key)

    def cell(self, arch: str, scenario: str) -> Path:
        return self.cells / f"{arch}.{scenario}.json"

    def pretrained(self, unit: Unit) -> bool:
        run = self.run(unit)
        return run.read_status().get("state") == "finished" and run.model.exists()

    def done(self, unit: Unit) -> bool:
        return all(self.cell(unit.arch.id, s).exists() for s in unit.probes)

    def read_cells(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every finished cell, keyed by (architecture id, scenario)."""
        out = {}
        for path in sorted(self.cells.glob("*.json")) if self.cells.is_dir() else []:
            cell = json.loads(path.read_text(encoding="utf-8"))
            out[(cell["arch"], cell["scenario"])] = cell
        return out
