"""The study directory: what is finished, and who is working on what.

    DIR/plan.json                     the pinned plan (written once)
    DIR/archs/<unit>/                 one run directory per pretraining (model.safetensors when done)
    DIR/probes/<arch>.<scenario>.json  one probe result per (architecture, scenario), written atomically
    DIR/locks/<unit>.lock             held (flock) by the process working on that unit
    DIR/failed/<unit>.txt             why a unit failed in the current invocation

A finished pretraining or probe result is never redone. Units are claimed as in every work folder
(:class:`selfnas.workdir.WorkDir`): a killed worker's unit is free again at once, and two live
workers never run the same unit.
"""

from __future__ import annotations

import json
import os
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
    probes = property(lambda self: self.path / "probes")

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        old = self.path / "cells"  # the folder's name before probe results were called so
        if old.is_dir() and not self.probes.exists():
            os.replace(old, self.probes)

    def run(self, unit: Unit) -> RunDir:
        return RunDir(self.path / "archs" / unit.key)

    def probe(self, arch: str, scenario: str) -> Path:
        return self.probes / f"{arch}.{scenario}.json"

    def pretrained(self, unit: Unit) -> bool:
        run = self.run(unit)
        return run.read_status().get("state") == "finished" and run.model.exists()

    def done(self, unit: Unit) -> bool:
        return all(self.probe(unit.arch.id, s).exists() for s in unit.probes)

    def read_probes(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every finished probe result, keyed by (architecture id, scenario)."""
        out = {}
        for path in sorted(self.probes.glob("*.json")) if self.probes.is_dir() else []:
            result = json.loads(path.read_text(encoding="utf-8"))
            out[(result["arch"], result["scenario"])] = result
        return out
