"""Search overhead of DARTS head search: a search epoch's time / a plain SSL epoch's time.

Same backbone, method, batch size and number of training images per epoch: the plain run
trains on N images; the search run alternates weight steps on N/2 images with
architecture steps on the other N/2, as NASiam does. Prints JSON.

    python benchmarks/search_overhead.py --images 8192 --method simsiam --order 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from selfnas.config import build_config
from selfnas.data import load_dataset
from selfnas.nas.strategies.darts import HeadSearchTrainer
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer


def epoch_seconds(cls, overrides: list[str], data) -> float:
    cfg = build_config(overrides=overrides)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = cls(cfg, RunDir.prepare(f"{tmp}/run"), quiet=True, data=data)
        t0 = time.perf_counter()
        trainer.fit()
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=8192)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--method", default="simsiam")
    ap.add_argument("--order", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    data = load_dataset("fashion-mnist", train_limit=args.images)
    common = [
        f"method.name={args.method}", "optim.epochs=1", f"optim.batch_size={args.batch_size}",
        "run.knn_every=0", "run.eval_at_end=false", "run.device=cpu", "run.checkpoint_every=100000",
    ]  # fmt: skip
    search = [*common, f"search.order={args.order}"]
    plain_t, search_t = [], []
    for _ in range(args.repeats):  # alternate, keep the best of each (noisy shared machine)
        plain_t.append(epoch_seconds(Trainer, common, data))
        search_t.append(epoch_seconds(HeadSearchTrainer, search, data))
    print(json.dumps({
        "benchmark": "search_overhead", "method": args.method, "order": args.order,
        "images_per_epoch": args.images, "batch_size": args.batch_size, "backbone": "resnet_small",
        "plain_epoch_s": round(min(plain_t), 2), "search_epoch_s": round(min(search_t), 2),
        "ratio": round(min(search_t) / min(plain_t), 3), "goal": "<= 1.2",
        "runs": {"plain": plain_t, "search": search_t},
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
