"""Progress display: a rich bar with loss, pairs/s and ETA, or plain epoch lines in quiet mode."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainProgress:
    def __init__(self, total: int, start: int, description: str, quiet: bool) -> None:
        self.quiet = quiet
        self.console = Console(stderr=True)
        self._bar: Progress | None = None
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
            )
            self._task = self._bar.add_task(description, total=total, completed=start, info="")
            self._bar.start()

    def update(self, step: int, **info: Any) -> None:
        if self._bar is not None:
            text = "  ".join(f"{k} {v}" for k, v in info.items())
            self._bar.update(self._task, completed=step, info=text)

    def log(self, message: str) -> None:
        if self._bar is not None:
            self._bar.console.print(message)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
