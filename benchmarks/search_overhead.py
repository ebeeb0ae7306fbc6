"""Search overhead of DARTS head search, two ways: per epoch and at equal weight steps.

Same backbone, method, batch size and N training images: the plain run trains on N images (N / batch
weight steps an epoch); the search run cuts them in two halves with the seed and does a weight step
on one half after an architecture step on the other, as NASiam does (N / 2 / batch weight steps an
epoch, see ``selfnas.nas.strategies.darts``). So:

- per epoch: a search epoch's wall time / a plain epoch's (``fit()``, start-up included), the cost
  of the search as a user runs it over the same data;
- per weight step: the time of a search step (architecture + weight step) / the time of a plain
  step, each from the trainer's own metric windows of ``--log-every`` steps with the first
  (warm-up) window left out (``fair.timed_fit``): the cost at equal weight updates.

Both pin ``run.threads`` to the cores; the two alternate ``--repeats`` times. Prints JSON with the
median and min / max of each and the ratios of the medians.

    python benchmarks/search_overhead.py --images 8192 --method simsiam --order 1
"""

from __future__ import annotations

import argparse
import tempfile
import time

from fair import emit, load_average, machine_record, summary, timed_fit

from selfnas.config import build_config
from selfnas.data import load_dataset
from selfnas.device import cpu_cores
from selfnas.nas.strategies.darts import HeadSearchTrainer
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer


def timed_epoch(cls: type[Trainer], overrides: list[str], data, tmp: str) -> dict:
    trainer = cls(build_config(overrides=overrides), RunDir.prepare(tmp), quiet=True, data=data)
    t0 = time.perf_counter()
    run = timed_fit(trainer, warmup_windows=1)
    return {"epoch_s": time.perf_counter() - t0, "steps_per_epoch": trainer.plan.steps_per_epoch, **run}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8192)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--method", default="simsiam")
    ap.add_argument("--order", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--log-every", type=int, default=4, help="steps per timing window (the first is warm-up)")
    ap.add_argument("--threads", type=int, default=None, help="run.threads (default: the cores)")
    ap.add_argument("--out", help="also write the JSON to this file (atomically)")
    args = ap.parse_args()
    load_start = load_average(warn=True)
    threads = args.threads or cpu_cores()
    data = load_dataset("fashion-mnist", train_limit=args.images)
    common = [
        f"method.name={args.method}", "optim.epochs=1", f"optim.batch_size={args.batch_size}",
        "run.knn_every=0", "run.eval_at_end=false", "run.device=cpu", "run.checkpoint_every=100000",
        f"run.log_every={args.log_every}", f"run.threads={threads}",
    ]  # fmt: skip
    search = [*common, f"search.order={args.order}"]
    plain, searched = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):  # alternate, so that a burst of other load hits both alike
            plain.append(timed_epoch(Trainer, common, data, f"{tmp}/plain{r}"))
            searched.append(timed_epoch(HeadSearchTrainer, search, data, f"{tmp}/search{r}"))
    epoch = {"plain_s": summary([r["epoch_s"] for r in plain], 3)}
    epoch["search_s"] = summary([r["epoch_s"] for r in searched], 3)
    epoch["ratio"] = round(epoch["search_s"]["median"] / epoch["plain_s"]["median"], 3)
    step = {"plain_s": summary([r["step_s"] for r in plain])}
    step["search_s"] = summary([r["step_s"] for r in searched])
    step["ratio"] = round(step["search_s"]["median"] / step["plain_s"]["median"], 3)
    emit(
        {
            "benchmark": "search_overhead", "method": args.method, "order": args.order,
            "images_per_epoch": args.images, "batch_size": args.batch_size, "backbone": "resnet_small",
            "threads": threads, "log_every": args.log_every, "repeats": args.repeats,
            "weight_steps_per_epoch": {
                "plain": plain[0]["steps_per_epoch"], "search": searched[0]["steps_per_epoch"],
            },
            "per_epoch": {**epoch, "measures": "fit() wall time of one epoch, start-up included"},
            "per_weight_step": {
                **step, "measures": "seconds per weight step after the first metric window; a search "
                "step holds its architecture step",
            },
            "ratio": epoch["ratio"], "ratio_equal_weight_steps": step["ratio"], "goal": "<= 1.2 (per epoch)",
            "runs": {"plain": plain, "search": searched},
            **machine_record(),
            "load_average": {"start": load_start, "end": load_average()},
        },
        args.out,
    )  # fmt: skip


if __name__ == "__main__":
    main()
