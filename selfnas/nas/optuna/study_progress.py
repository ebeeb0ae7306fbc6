"""What a study shows while it runs: one short console line per finished trial, the rest in a log.

Console (stderr), one line per trial of the shared study as it finishes, whichever process ran it::

    trial 7   3/20  ssl_loss -0.8123  best -0.8410 (trial 2)  eta 1m20s

``3/20`` counts results toward ``search.trials`` (see :mod:`~selfnas.nas.optuna.study_ledger`),
the score is the configured one as measured (not the minimised objective), and the ETA divides the
trials still to come by the rate this process has seen. Pruned and failed results say so; a trial
whose worker died says it is retried. Without ``quiet`` a status bar stays under the lines.

Optuna's own log (study created or loaded, every trial with all its parameters) goes to the run's
``study.log`` only, never to the console.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from selfnas.nas.optuna.study_ledger import budget_trials, cancelled, retry_of
from selfnas.render.durations import duration
from selfnas.score_records import ScoreRecord

#: the run's log file of a study (Optuna's messages, each trial's parameters)
LOG_FILE = "study.log"


@contextlib.contextmanager
def study_log(path: Path) -> Iterator[None]:
    """Send Optuna's log (INFO and up) to ``path`` alone for the duration; restore it after."""
    logger = logging.getLogger("optuna")
    saved = (list(logger.handlers), logger.level)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(levelname)s %(asctime)s pid %(process)d] %(message)s"))
    for h in saved[0]:
        logger.removeHandler(h)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        for h in saved[0]:
            logger.addHandler(h)
        logger.setLevel(saved[1])


def score_of(trial: FrozenTrial, score: ScoreRecord) -> float | None:
    """The configured score of a COMPLETE trial as measured, read back from the objective the
    study minimised (:meth:`~selfnas.score_records.ScoreRecord.value_from_objective`)."""
    if trial.value is None or not math.isfinite(trial.value):
        return None
    return score.value_from_objective(trial.value)


class StudyProgress:
    """Prints the trials of ``study`` that finished since the last :meth:`update`; also an Optuna
    callback (``callbacks=[progress]``)."""

    def __init__(self, name: str, budget: int, score: ScoreRecord, quiet: bool) -> None:
        self.name, self.budget, self.score, self.quiet = name, budget, score, quiet
        self._shown: set[int] | None = None  # trial numbers already reported (None: not yet looked)
        self._start: tuple[float, int] = (time.monotonic(), 0)
        self._console = Console(stderr=True, highlight=False)
        self._bar: Progress | None = None
        self._task: Any = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.update(study.get_trials(deepcopy=False))

    def say(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=sys.stderr, flush=True)

    def begin(self, trials: list[FrozenTrial], finished: bool = False) -> None:
        """The trials done before this process looked: one summary line, not one line each
        (``finished``: the line says the study is finished and nothing will run)."""
        results = budget_trials(trials)
        self._shown = {t.number for t in trials if t.state.is_finished()}
        self._start = (time.monotonic(), len(results))
        lead = _best_until(results, None)
        best = f", best {self.score.name} {self._best_text(lead)}" if lead else ""
        if finished:
            self.say(
                f"study {self.name} is finished: {len(results)}/{self.budget} trials{best}; nothing to run"
            )
            return
        if results:
            self.say(f"study {self.name}: {len(results)}/{self.budget} trials done{best}")
        self._open_bar(len(results))

    def update(self, trials: list[FrozenTrial]) -> None:
        if self._shown is None:
            self.begin(trials)
        assert self._shown is not None
        results = sorted(budget_trials(trials), key=_finished_at)
        order = {t.number: i + 1 for i, t in enumerate(results)}
        fresh = [
            t for t in trials if t.state.is_finished() and t.number not in self._shown and not cancelled(t)
        ]
        for t in sorted(fresh, key=_finished_at):
            self._shown.add(t.number)
            best = _best_until(results, t)
            self.say(self._line(t, order.get(t.number), len(results), best, trials))
        if self._bar is not None:
            lead = _best_until(results, None)
            info = f"best {self._best_text(lead)}  eta {self._eta(len(results))}" if lead else ""
            self._bar.update(self._task, completed=min(len(results), self.budget), info=info)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _open_bar(self, done: int) -> None:
        if self.quiet or self._bar is not None:
            return
        columns = (TextColumn("[bold]study {task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"))  # fmt: skip
        self._bar = Progress(*columns, console=self._console, transient=True)
        self._task = self._bar.add_task(self.name, total=self.budget, completed=done, info="")
        self._bar.start()

    def _line(self, t: FrozenTrial, counter: int | None, done: int, best: FrozenTrial | None,
              trials: list[FrozenTrial]) -> str:  # fmt: skip
        head = f"trial {t.number:<3d}"
        if counter is None:  # not a result: its worker died (and it is retried)
            retry = next((r.number for r in trials if retry_of(r) is not None and t.number in
                          r.system_attrs.get("retry_history", ())), None)  # fmt: skip
            return f"{head} its worker died" + (f"; retried as trial {retry}" if retry is not None else "")
        head += f" {counter:>{len(str(self.budget))}d}/{self.budget}"
        if t.state == TrialState.COMPLETE:
            what = f"{self.score.name} {_number(score_of(t, self.score))}"
        elif t.state == TrialState.PRUNED:
            what = f"pruned at epoch {t.last_step}" if t.last_step is not None else "pruned"
        else:
            reason = t.user_attrs.get("fail_reason") or "its worker died too often"
            what = f"failed ({reason[:60]})"
        tail = f"  best {self._best_text(best)}" if best is not None else ""
        return f"{head}  {what}{tail}  eta {self._eta(done)}"

    def _best_text(self, t: FrozenTrial) -> str:
        return f"{_number(score_of(t, self.score))} (trial {t.number})"

    def _eta(self, done: int) -> str:
        if done >= self.budget:
            return "0s"
        t0, done0 = self._start
        if done <= done0:
            return "?"
        rate = (done - done0) / max(time.monotonic() - t0, 1e-9)
        return duration((self.budget - done) / rate, compact=True)


def _finished_at(t: FrozenTrial) -> float:
    return t.datetime_complete.timestamp() if t.datetime_complete else math.inf


def _best_until(results: list[FrozenTrial], last: FrozenTrial | None) -> FrozenTrial | None:
    """The best COMPLETE result that finished no later than ``last`` (None: all of them)."""
    until = _finished_at(last) if last is not None else math.inf
    done = [t for t in results if t.state == TrialState.COMPLETE and _finished_at(t) <= until
            and t.value is not None and math.isfinite(t.value)]  # fmt: skip
    return min(done, key=lambda t: t.value) if done else None  # type: ignore[arg-type, return-value]


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
