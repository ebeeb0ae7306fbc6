"""What a report knows about a run directory, read tolerantly.

A report must render for any run: finished, running, interrupted, failed, or one whose
files are missing or unreadable. An unreadable file becomes a warning, never an
exception. A directory may also hold sub-runs (``search/``, ``found/``, ``hand/``, or the
runs of a study); they are read the same way, a few levels deep. A fine-tuning run also
reads its source run's eval.json: the frozen scores of the backbone before fine-tuning.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from selfnas.errors import GenotypeError, RunDirError
from selfnas.models.genotype import HeadGenotype, load_genotype
from selfnas.report.problems import read_metrics, run_problems
from selfnas.rundir import RunDir

MAX_DEPTH = 3
NOT_RUNS = frozenset({"plots", "checkpoints", "trials"})  # a study's trials: summarised by its section
#: the training protocols, as :attr:`RunFacts.protocol` names them
SSL, SUPERVISED, FINETUNE = "ssl", "supervised", "finetune"


@dataclass
class RunFacts:
    """The files of one run directory (or of a directory of runs), parsed."""

    run: RunDir
    is_run: bool
    status: dict[str, Any] = field(default_factory=dict)
    config_text: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    genotype: HeadGenotype | None = None
    #: a pipeline directory's (``selfnas quickstart``) comparison summary: summary.json
    summary: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    #: the live process that holds the run's lock (pid, host, command, since), or None
    owner: dict[str, Any] | None = None
    children: list[RunFacts] = field(default_factory=list)
    #: a fine-tuning run's source run (``finetune.source``) when found, and its eval.json
    source: RunDir | None = None
    source_evaluation: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.run.path.resolve().name

    @property
    def steps(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == "step"]

    @property
    def epochs(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == "epoch"]

    @property
    def search_epochs(self) -> list[dict[str, Any]]:
        """Epoch records of an architecture search (they carry the alphas)."""
        return [r for r in self.epochs if isinstance(r.get("alphas"), dict)]

    @property
    def protocol(self) -> str:
        """:data:`FINETUNE` or :data:`SUPERVISED` for a run trained with labels (its config's section,
        else its eval.json's), else :data:`SSL` (pretraining, a search, or a directory of runs)."""
        for name in (FINETUNE, SUPERVISED):
            if self.section(name) or isinstance((self.evaluation or {}).get(name), dict):
                return name
        return SSL

    def section(self, name: str) -> dict[str, Any]:
        """One section of the resolved config, ``{}`` when absent."""
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}

    def walk(self) -> Iterator[RunFacts]:
        yield self
        for child in self.children:
            yield from child.walk()


def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        problems.append(f"{path.name} is unreadable or not valid JSON; ignored")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path.name} does not hold a JSON object; ignored")
        return None
    return data


def _read_config(run: RunDir, facts: RunFacts) -> None:
    if not run.config.exists():
        return
    try:
        facts.config_text = run.config.read_text(encoding="utf-8")
        parsed = yaml.safe_load(facts.config_text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        facts.problems.append("config.yaml is unreadable or not valid YAML")
        return
    facts.config = parsed if isinstance(parsed, dict) else {}


def _read_genotype(run: RunDir, facts: RunFacts) -> None:
    path = run.genotype
    if not path.exists():
        return
    try:
        genotype = load_genotype(path)
    except GenotypeError as exc:
        facts.problems.append(f"genotype.json not shown: {exc}")
        return
    if isinstance(genotype, HeadGenotype):
        facts.genotype = genotype  # cells are drawn by their own section, from the file


def _read_source(facts: RunFacts) -> None:
    """A fine-tuning run's source: ``finetune.source`` as recorded (relative to the working
    directory), else a run of that name beside this one (the two moved together)."""
    recorded = facts.section(FINETUNE).get("source")
    if not isinstance(recorded, str) or not recorded:
        return
    for candidate in (Path(recorded), facts.run.path.parent / Path(recorded).name):
        source = RunDir(candidate)
        if source.path.resolve() != facts.run.path.resolve() and source.config.is_file():
            facts.source = source
            facts.source_evaluation = _read_json(source.eval, [])
            return


def load_facts(path: str | Path, depth: int = 0) -> RunFacts:
    """Read ``path``, a run directory or a directory holding runs.

    Raises :class:`RunDirError` when ``path`` is neither (at the top level only).
    """
    run = RunDir(path)
    if not run.path.is_dir():
        raise RunDirError(f"{run.path} is not a directory; pass a run directory")
    facts = RunFacts(run=run, is_run=run.is_run())
    if facts.is_run:
        facts.status = _read_json(run.status, facts.problems) or {}
        _read_config(run, facts)
        facts.provenance = _read_json(run.provenance, facts.problems)
        facts.evaluation = _read_json(run.eval, facts.problems)
        facts.records, damaged = read_metrics(run.metrics)
        facts.problems += damaged
        _read_genotype(run, facts)
        _read_source(facts)
        facts.owner = run.owner()
        facts.problems += run_problems(run, facts.config, facts.status, facts.evaluation is not None)
    elif (run.path / "pipeline.yaml").exists():
        facts.summary = _read_json(run.path / "summary.json", facts.problems)
    if depth < MAX_DEPTH:
        for child in sorted(p for p in run.path.iterdir() if p.is_dir()):
            if child.name.startswith(".") or child.name in NOT_RUNS:
                continue
            sub = load_facts(child, depth + 1)
            if sub.is_run or sub.children:
                facts.children.append(sub)
    if depth == 0 and not facts.is_run and not facts.children:
        raise RunDirError(f"{run.path} is not a selfnas run (no config.yaml or status.json) and holds none")
    return facts
