"""The chaos driver: one shared Optuna study whose worker processes are killed and restarted, and
whose database is restarted, until the study ends; returns the figures and the problems found.

``workers`` ``selfnas search`` processes (each its own ``--out``, as on separate machines) share
one study of ``trials`` tiny cell-search trials (synthetic data, about a second each). The driver
kills ``kills`` times a random worker with SIGKILL (three times in four one that is mid-trial),
at random points between 5% and 85% of the budget, restarts it after 0.5-3 s (``--resume`` when
its run directory was written, else afresh), and on PostgreSQL restarts the server once at 40%
(every connection drops; it stays down ``db_down_s`` seconds). Kills are placed by progress, not
by the clock, so a slow machine gets the same chaos. At the end it checks what issue 24 asks
(:func:`selfnas.nas.optuna.study_ledger.check_finished`), and that every worker exited 0 or was
killed by the driver.

The driver never restarts a worker while the server is down, and restarts the server only while
every live worker is past opening the study: a worker that *starts* during an outage is refused
with one line (exit 2), which is the intended behaviour and not what this run measures.

Used by ``tests/nas/optuna/test_study_chaos.py`` and ``benchmarks/study_chaos.py`` (which prints
the figures); the server is a :class:`tests.pg.PostgresServer`.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfnas.nas.optuna.study_ledger import budget_trials, check_finished, tally
from selfnas.nas.optuna.study_storage import open_storage

REPO = Path(__file__).resolve().parents[3]

#: the cheapest trial found that still trains: ~1 s of one core each (synthetic 16 px images,
#: 256 of them, a 3-cell network 2 channels wide, 0.15 epoch); 2 nodes per cell so that 200 random
#: candidates almost never repeat by chance (a repeat would read as a trial run twice)
TINY_TRIAL = [
    "data.name=synthetic", "data.train_limit=256", "model.backbone_kwargs={width: 8, depths: [1, 1]}",
    "method.proj_hidden=32", "method.proj_out=16", "method.pred_hidden=8", "optim.batch_size=32",
    "optim.epochs=1", "run.knn_bank=256", "run.log_every=2", "run.checkpoint_every=1000", "run.device=cpu",
    "run.threads=1", "search.nodes=2", "search.cell_width=2", "search.cell_layers=3",
    "search.trial_epochs=0.15", "search.pruner=none", "search.label_eval=false",
]  # fmt: skip


@dataclass
class Worker:
    slot: int
    out: Path
    proc: subprocess.Popen[bytes] | None = None
    log: Any = None
    started: float = 0.0
    restart_at: float | None = None
    generations: int = 0
    exits: list[int] = field(default_factory=list)  # exit codes not caused by the driver


@dataclass
class Chaos:
    """One chaos run's settings."""

    storage: str  # "postgresql" or "journal"
    workdir: Path
    workers: int = 8
    trials: int = 200
    seed: int = 0
    kills: int = 12
    kill_between: tuple[float, float] = (0.05, 0.85)  # fractions of the budget done
    restart_delay_s: tuple[float, float] = (0.5, 3.0)
    db_restart_at: float = 0.4  # fraction of the budget done
    db_down_s: float = 2.0
    timeout_s: float = 1500.0
    server: Any = None  # tests.pg.PostgresServer, for postgresql


def run(chaos: Chaos) -> dict[str, Any]:
    """Run the chaos study; returns the figures and the list of problems found (empty: clean)."""
    rng = random.Random(chaos.seed)
    name = f"chaos{uuid.uuid4().hex[:8]}"
    if chaos.storage == "postgresql":
        url = chaos.server.create_database()
    else:
        url = f"journal:{chaos.workdir / 'study.journal'}"
    args = ["search", "--space", "cells", "--strategy", "random", "--trials", str(chaos.trials),
            "--storage", url, "--study-name", name, "--quiet"]  # fmt: skip
    for o in [*TINY_TRIAL, f"run.seed={chaos.seed}"]:
        args += ["--set", o]
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    workers = [Worker(i, chaos.workdir / f"w{i}") for i in range(chaos.workers)]
    figures: dict[str, Any] = {"storage": chaos.storage, "workers": chaos.workers, "budget": chaos.trials,
                               "seed": chaos.seed, "kills": 0, "kills_mid_trial": 0, "worker_restarts": 0,
                               "db_restarts": 0, "db_down_s": 0.0}  # fmt: skip
    problems: list[str] = []

    def start(w: Worker) -> None:
        resume = (w.out / "config.yaml").exists()
        cmd = [sys.executable, "-m", "selfnas.cli", *(["search", "--resume", "--quiet"] if resume else args),
               "--out", str(w.out)]  # fmt: skip
        w.log = open(chaos.workdir / f"w{w.slot}.{w.generations}.err", "wb")  # noqa: SIM115 - closed on exit
        w.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=w.log)
        w.started, w.restart_at = time.monotonic(), None
        w.generations += 1

    t0 = time.monotonic()
    for w in workers:
        start(w)
    reader = _Reader(url, name)
    kill_at = sorted(rng.uniform(*chaos.kill_between) * chaos.trials for _ in range(chaos.kills))
    db_restarted = chaos.storage != "postgresql"
    while True:
        now = time.monotonic()
        if now - t0 > chaos.timeout_s:
            problems.append(f"not finished after {chaos.timeout_s:.0f} s")
            break
        for w in workers:  # reap the workers that ended by themselves
            if w.proc is not None and w.proc.poll() is not None:
                if w.proc.returncode != 0:
                    w.exits.append(w.proc.returncode)
                    tail = (chaos.workdir / f"w{w.slot}.{w.generations - 1}.err").read_text()[-1500:]
                    problems.append(f"worker {w.slot} exited {w.proc.returncode}: {tail}")
                w.log.close()
                w.proc = None
        trials = reader.trials()
        done = reader.results(trials)
        live = [w for w in workers if w.proc is not None]
        pending = [w for w in workers if w.restart_at is not None]
        if not live and not pending:
            break
        owners = {t.user_attrs.get("owner", {}).get("pid") for t in trials}
        if (
            not db_restarted
            and done >= chaos.db_restart_at * chaos.trials
            and all(w.proc.pid in owners for w in live)
        ):
            figures["db_down_s"] = round(chaos.server.restart(down_s=chaos.db_down_s), 2)
            figures["db_restarts"] += 1
            db_restarted = True
            reader.reset()
            continue
        if kill_at and done >= kill_at[0] and live:
            kill_at.pop(0)
            running = {t.user_attrs.get("owner", {}).get("pid") for t in trials if t.state.name == "RUNNING"}
            mid = [w for w in live if w.proc.pid in running]
            victim = rng.choice(mid if mid and rng.random() < 0.75 else live)
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
            victim.log.close()
            victim.proc = None
            figures["kills"] += 1
            figures["kills_mid_trial"] += victim in mid
            victim.restart_at = now + rng.uniform(*chaos.restart_delay_s)
        for w in pending:
            if now >= w.restart_at and (db_restarted or done < chaos.db_restart_at * chaos.trials):
                start(w)
                figures["worker_restarts"] += 1
        time.sleep(0.2)
    for w in workers:  # only after a timeout
        if w.proc is not None:
            w.proc.kill()
            w.proc.wait()
    figures["wall_s"] = round(time.monotonic() - t0, 1)
    trials = reader.trials(final=True)
    figures.update(tally(trials))
    figures["trials_per_min"] = round(60 * figures["results"] / figures["wall_s"], 1)
    problems += check_finished(trials, chaos.trials)
    figures["unexpected_exits"] = sum(len(w.exits) for w in workers)
    figures["problems"] = problems
    return figures


class _Reader:
    """The driver's read-only view of the study (it never writes to it)."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name
        self._storage: Any = None
        self._last: list[Any] = []

    def reset(self) -> None:
        self._storage = None

    def trials(self, final: bool = False) -> list[Any]:
        """The study's trials; the last ones read while the database is down (no waiting: the
        driver must go on killing and restarting)."""
        for _ in range(30 if final else 1):
            try:
                if self._storage is None:
                    self._storage = open_storage(self.url)
                    self._storage.outage_s = 0.0  # a lost connection fails at once; reopened next time
                study_id = self._storage.get_study_id_from_name(self.name)
                self._last = self._storage.get_all_trials(study_id, deepcopy=False)
                return self._last
            except Exception:  # noqa: BLE001 - the study does not exist yet, or the server is down
                self._storage = None
                if final:
                    time.sleep(1.0)
        return self._last

    @staticmethod
    def results(trials: list[Any]) -> int:
        return len(budget_trials(trials))
