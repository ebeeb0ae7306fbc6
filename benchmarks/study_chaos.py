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

The driver is ``tests/nas/optuna/chaos.py`` (the chaos test runs it too), the end-of-study checks
``selfnas.nas.optuna.study_ledger.check_finished``.

    python benchmarks/study_chaos.py --storage postgresql --workers 8 --trials 200 --seed 0
    python benchmarks/study_chaos.py --storage journal --seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


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
    from tests.nas.optuna.chaos import Chaos, run

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
