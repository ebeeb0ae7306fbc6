"""Chaos run of one shared Optuna study: worker processes killed and restarted, the database
restarted, and the study must still end clean; prints JSON figures.

``--workers`` ``selfnas search`` processes (each its own ``--out``, as on separate machines) share
one study of ``--trials`` tiny cell-search trials (synthetic data, about a second each). A driver
kills ``--kills`` times a random worker with SIGKILL (three times in four one that is mid-trial),
at random points between 5% and 85% of the budget, restarts it after 0.5-3 s (``--resume`` when
its run directory was written, else afresh), and on PostgreSQL restarts the server once at 40%
(every connection drops; it stays down ``--db-down`` seconds). Kills are placed by progress, not
by the clock, so a slow machine gets the same chaos. At the end it checks what issue 24 asks:

* exactly ``--trials`` results (trials that count toward the budget), numbers contiguous;
* no RUNNING and no WAITING trial;
* no parameter set run twice except a trial and its declared retries;
* every killed trial failed and retried (or its retries exhausted), every worker exited 0 or
  was killed by the driver.

The driver never restarts a worker while the server is down, and restarts the server only while
every live worker is past opening the study: a worker that *starts* during an outage is refused
with one line (exit 2), which is the intended behaviour and not what this run measures.

    python benchmarks/study_chaos.py --storage postgresql --workers 8 --trials 200 --seed 0
    python benchmarks/study_chaos.py --storage journal --seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

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
    figures.update(summarise(trials))
    figures["trials_per_min"] = round(60 * figures["results"] / figures["wall_s"], 1)
    problems += check_study(trials, chaos.trials)
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
        from selfnas.nas.optuna.study_storage import open_storage

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
        from selfnas.nas.optuna.study_ledger import budget_trials

        return len(budget_trials(trials))


def summarise(trials: list[Any]) -> dict[str, Any]:
    from selfnas.nas.optuna.study_ledger import budget_trials, cancelled, retry_of

    results = budget_trials(trials)
    counted = {t.number for t in results}
    return {
        "trials_in_study": len(trials),
        "results": len(results),
        "complete": sum(t.state.name == "COMPLETE" for t in results),
        "died_and_retried": sum(
            t.state.name == "FAIL" and t.number not in counted and not cancelled(t) for t in trials
        ),  # fmt: skip
        "retries": sum(retry_of(t) is not None for t in trials),
        "cancelled": sum(cancelled(t) for t in trials),
    }


def check_study(trials: list[Any], budget: int) -> list[str]:
    """What must hold at the end of any chaos run (empty list: all of it)."""
    from selfnas.nas.optuna.study_ledger import MAX_RETRIES, budget_trials, cancelled, retry_of

    problems = []
    results = budget_trials(trials)
    if len(results) != budget:
        problems.append(f"{len(results)} results for a budget of {budget}")
    numbers = sorted(t.number for t in trials)
    if numbers != list(range(len(trials))):
        problems.append("trial numbers are not contiguous")
    for state in ("RUNNING", "WAITING"):
        left = [t.number for t in trials if t.state.name == state]
        if left:
            problems.append(f"{state} trials left: {left}")
    roots: dict[str, set[int]] = {}
    for t in trials:
        if t.params:
            root = retry_of(t) if retry_of(t) is not None else t.number
            roots.setdefault(json.dumps(t.params, sort_keys=True), set()).add(root)
    repeated = [r for r in roots.values() if len(r) > 1]
    if repeated:
        problems.append(f"parameter sets run by unrelated trials: {repeated}")
    counted = {t.number for t in results}
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    for t in trials:  # a dead worker's trial: retried, or counted once its retries ran out
        dead = t.state.name == "FAIL" and "fail_reason" not in t.user_attrs and not cancelled(t)
        if (
            dead
            and t.number not in retried
            and not (t.number in counted and len(t.system_attrs.get("retry_history", ())) >= MAX_RETRIES)
        ):
            problems.append(f"trial {t.number} failed without a retry or a reason")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--storage", choices=("postgresql", "journal"), default="postgresql")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kills", type=int, default=12, help="workers killed with SIGKILL (and restarted)")
    parser.add_argument("--db-down", type=float, default=2.0, help="seconds the server stays down")
    parser.add_argument("--timeout", type=float, default=1500.0)
    parser.add_argument("--out", type=Path, help="append the figures to this JSON list")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    server = None
    if args.storage == "postgresql":
        from tests.pg import PostgresServer, bin_dir

        binaries = bin_dir()
        if binaries is None:
            raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
        server = PostgresServer(binaries)
    try:
        with tempfile.TemporaryDirectory(prefix="selfnas-chaos-") as tmp:
            figures = run(Chaos(args.storage, Path(tmp), args.workers, args.trials, args.seed, args.kills,
                                db_down_s=args.db_down, timeout_s=args.timeout, server=server))  # fmt: skip
    finally:
        if server is not None:
            server.close()
    figures["cpu_cores"] = os.cpu_count()
    figures["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(figures, indent=2))
    if args.out:
        from selfnas.io import atomic_write_json

        previous = json.loads(args.out.read_text()) if args.out.exists() else []
        atomic_write_json(args.out, [*previous, figures])


if __name__ == "__main__":
    main()
