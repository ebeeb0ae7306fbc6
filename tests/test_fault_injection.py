"""kill -9 at seeded random points of real CLI runs, then ``--resume`` until done.

Three commands, each first run once uninterrupted for reference:

* ``selfnas train`` and ``selfnas search --space heads --strategy darts``: the resumed run must
  end bit-identical to the reference (model.safetensors, genotype.json, metric lines);
* ``selfnas search --space cells --strategy random`` (an Optuna study): a trial killed mid-way is
  failed and retried with the same parameters, and a resumed study re-seeds its sampler from the
  number of trials already done, so the *sequence* of candidates differs from an uninterrupted
  study and the best genotype may too. What is guaranteed, and asserted: exactly
  ``search.trials`` finished trials counted once each (a killed trial and its retry count once),
  no trial left RUNNING, no trial number twice, every killed trial retried with its parameters,
  genotype.json is the best finished trial's, and every candidate that the reference study also
  evaluated got the identical score (training a candidate is deterministic).

After every kill, nothing in the run directory may be half-written: every .json and .yaml parses,
every .jsonl line parses except possibly an unterminated last line (``selfnas.io.read_jsonl``
skips it, and a resume rewrites the file), every .safetensors loads. Temporary files of an
interrupted atomic write may remain after a kill; the next start removes them, so none may
remain once the run finished.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import REPO, TINY, run_cli, set_args

pytestmark = pytest.mark.slow

SEED = 20240909
COMMON = [*set_args(TINY), *set_args(["run.eval_at_end=false", "run.knn_every=0"]), "--quiet"]
# a checkpoint after every step: a kill anywhere loses at most one step, and lands in a
# checkpoint write often
EVERY_STEP = set_args(["run.log_every=1", "run.checkpoint_every=1", "optim.epochs=3"])
CELLS = [
    "search.cell_width=4",
    "search.cell_layers=3",
    "search.nodes=2",
    "search.trials=4",
    "search.trial_epochs=1",
]
# name: (arguments, kills, new metric lines before a kill: at most). The margins keep every run
# alive until its last kill: train and the DARTS search write 24 lines, the study's 4 trials 5 each
# (plus those of killed trials).
COMMANDS = {
    "train": (["train", *COMMON, *EVERY_STEP], 4, 3),
    "darts-heads": (
        ["search", "--space", "heads", "--strategy", "darts", *COMMON, *EVERY_STEP, "--batch-size", "32",
         *set_args(["search.projector_layers=2", "search.predictor_layers=2"])],
        3,
        4,
    ),
    "optuna-cells": (["search", "--space", "cells", "--strategy", "random", *COMMON, *set_args(CELLS)], 3, 5),
}  # fmt: skip
KILLS_SURVIVED: dict[str, int] = {}


def _metric_lines(run: Path) -> int:
    """Terminated metric lines anywhere in the run (trials included): the progress clock."""
    total = 0
    for path in run.rglob("metrics.jsonl"):
        try:
            total += path.read_bytes().count(b"\n")
        except OSError:
            pass
    return total


def _temp_files(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if p.name.endswith((".tmp", "-journal", "-wal"))]


def assert_nothing_half_written(run: Path) -> None:
    for path in run.rglob("*.json"):
        json.loads(path.read_text())
    for path in run.rglob("*.yaml"):
        yaml.safe_load(path.read_text())
    for path in run.rglob("*.jsonl"):
        text = path.read_text()
        lines = text.split("\n")
        *terminated, tail = lines  # tail: "" when the file ends with a newline
        for line in terminated:
            if line.strip():
                json.loads(line)
        if tail.strip():  # an unterminated last line: a kill mid-append; read_jsonl skips it if torn
            try:
                json.loads(tail)
            except json.JSONDecodeError:
                from selfnas.io import read_jsonl

                assert len(read_jsonl(path)) == sum(1 for line in terminated if line.strip())
    for path in run.rglob("*.safetensors"):
        if not path.name.startswith("."):
            load_file(str(path))


def _kill_and_resume(args: list[str], out: Path, kills: int, most: int, rng: random.Random) -> int:
    """Start ``args``; kill -9 it after a random number of new metric lines (plus a random
    delay), ``kills`` times, resuming in between; then resume to the end. Returns the kills."""
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    survived = 0
    for attempt in range(kills):
        command = [sys.executable, "-m", "selfnas.cli", *args, "--out", str(out)]
        if attempt:
            command.append("--resume")
        target = _metric_lines(out) + rng.randint(1, most)
        delay = rng.uniform(0.0, 0.05)
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while proc.poll() is None and _metric_lines(out) < target and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        if proc.poll() is not None:  # finished (or failed) before the kill
            assert proc.returncode == 0, proc.stderr.read().decode()
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        survived += 1
        assert_nothing_half_written(out)
    status = json.loads((out / "status.json").read_text())
    if status.get("state") != "finished":
        run_cli(*args, "--out", str(out), "--resume", check=True)
    assert json.loads((out / "status.json").read_text())["state"] == "finished"
    assert_nothing_half_written(out)
    assert not _temp_files(out), _temp_files(out)
    return survived


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _losses(run: Path) -> list[tuple]:
    from selfnas.io import read_jsonl

    return [
        (r.get("kind"), r.get("step"), r.get("loss"), r.get("lr")) for r in read_jsonl(run / "metrics.jsonl")
    ]


def _check_study(run: Path, reference: Path, trials: int) -> None:
    import optuna

    from selfnas.nas.optuna.optuna_search import budget_trials, retry_of

    study = optuna.load_study(study_name="selfnas", storage=f"sqlite:///{run / 'study.db'}")
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(budget_trials(study.trials)) == trials
    killed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    for t in killed:  # every killed trial was retried with the same candidate (a retry names its chain)
        retries = [r for r in study.trials if t.number in r.system_attrs.get("retry_history", ())]
        assert retries and all(r.params == t.params and retry_of(r) is not None for r in retries)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value)
    assert json.loads((run / "genotype.json").read_text()) == best.user_attrs["genotype"]
    rows = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert sorted(r["number"] for r in rows) == sorted(numbers)
    # deterministic training: a candidate evaluated in both studies scored the same in both
    ref = optuna.load_study(study_name="selfnas", storage=f"sqlite:///{reference / 'study.db'}")
    ref_values = {
        json.dumps(t.params, sort_keys=True): t.value for t in ref.trials if t.state.name == "COMPLETE"
    }
    shared = [t for t in complete if json.dumps(t.params, sort_keys=True) in ref_values]
    print(f"  {len(killed)} killed trial(s) retried; {len(shared)} candidate(s) scored in both studies")
    for t in shared:
        assert t.value == ref_values[json.dumps(t.params, sort_keys=True)]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_kill_9_at_random_points_then_resume(tmp_path, name):
    args, kills, most = COMMANDS[name]
    run_cli(*args, "--out", str(tmp_path / "reference"), check=True)
    rng = random.Random(f"{SEED}-{name}")
    survived = _kill_and_resume(args, tmp_path / "killed", kills, most, rng)
    assert survived == kills, f"the run finished after {survived} of {kills} kills"
    KILLS_SURVIVED[name] = survived
    print(f"\n{name}: survived {survived} kill -9 (total so far: {sum(KILLS_SURVIVED.values())})")
    ref, out = tmp_path / "reference", tmp_path / "killed"
    if name == "optuna-cells":
        _check_study(out, ref, trials=4)
        return
    _same_weights(ref / "model.safetensors", out / "model.safetensors")
    assert _losses(ref) == _losses(out)
    if name == "darts-heads":
        assert (ref / "genotype.json").read_text() == (out / "genotype.json").read_text()
