"""Progress display: a rich bar with loss, pairs/s and ETA, or plain lines in quiet mode.

One class serves training, the kNN monitor, a study and the final evaluation. The bar's count
moves with every :meth:`TrainProgress.update` (cheap: rich redraws from its own thread a few times
a second), its text only when given; a phase that runs under it (the kNN monitor, an evaluation's
feature extraction, kNN and linear probe) reports through :meth:`TrainProgress.__call__`, the
``ProbeProgress`` callback of :mod:`selfnas.eval.probes`, and shows as a second line. Quiet mode
draws no bars: it prints what is logged, and one status line after every ``heartbeat`` seconds
without a line, so a log file shows that a long phase is alive.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: quiet mode: seconds without a line before a status line is printed
HEARTBEAT_S = 15.0


class TrainProgress:
    """A bar of ``total`` steps starting at ``start``, or quiet lines. With ``total`` None the bar
    shows the phases reported to :meth:`__call__`, one after another (an evaluation).

    heartbeat: quiet mode's seconds of silence before a status line; None prints only :meth:`log`
    (a process whose progress another one reports)."""

    def __init__(
        self,
        total: int | None,
        start: int,
        description: str,
        quiet: bool,
        *,
        heartbeat: float | None = HEARTBEAT_S,
    ) -> None:
        self.quiet = quiet
        self.total = total
        self.description = description
        self.heartbeat = heartbeat
        self.console = Console(stderr=True)
        self._step, self._info = start, ""
        self._said = time.monotonic()  # when the last quiet line was printed
        self._bar: Progress | None = None
        self._phase: TaskID | None = None
        if not quiet:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
                refresh_per_second=4,  # the elapsed time moves even while a step or phase is long
            )
            self._task = self._bar.add_task(description, total=total, completed=start, info="")
            self._bar.start()

    def update(self, step: int, **info: Any) -> None:
        """Move the count to ``step`` (call it every step: it is cheap); ``info`` (e.g. loss, pairs/s)
        replaces the text after the count, which otherwise stays."""
        self._step = step
        if info:
            self._info = "  ".join(f"{k} {v}" for k, v in info.items())
        if self._bar is not None:
            if info:
                self._bar.update(self._task, completed=step, info=self._info)
            else:
                self._bar.update(self._task, completed=step)
        elif self._due():
            of = f"/{self.total} ({100 * step / self.total:.0f}%)" if self.total else ""
            self._say(f"{self.description}: {step}{of}" + (f"  {self._info}" if self._info else ""))

    def __call__(self, phase: str, done: int, total: int) -> None:
        """How far a phase got (``done`` of ``total`` images, queries or fits): a second line under
        the bar, hidden once ``done == total`` (the bar itself when it has no total of its own); a
        quiet status line when one is due."""
        if self._bar is None:
            if self._due():
                self._say(f"{phase}: {done}/{total}")
            return
        if self.total is None:  # a bar of phases only (an evaluation): the phases take the bar
            if done == 0:
                self._bar.reset(self._task, total=total, description=phase)
            self._bar.update(self._task, completed=done, description=phase)
            return
        finished = done >= total
        if self._phase is None:
            if finished:
                return
            self._phase = self._bar.add_task(phase, total=total, completed=done, info="")
        elif not finished and done == 0:  # a new phase: its own elapsed time and rate
            self._bar.reset(self._phase, total=total, description=phase, visible=True)
        self._bar.update(self._phase, completed=done, description=phase, visible=not finished)

    def log(self, message: str) -> None:
        if self._bar is not None:
            self._bar.console.print(message)
        else:
            print(message, file=sys.stderr, flush=True)
            self._said = time.monotonic()

    def close(self) -> None:
        if self._bar is not None:
            if self._phase is not None:
                self._bar.remove_task(self._phase)
            self._bar.stop()

    def _due(self) -> bool:
        return self.heartbeat is not None and time.monotonic() - self._said >= self.heartbeat

    def _say(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        self._said = time.monotonic()
