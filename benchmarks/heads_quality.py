"""Found heads vs hand-crafted heads at the same pretraining budget (NASiam's claim).

For each seed: DARTS-search SimSiam heads on unlabeled Fashion-MNIST, then pretrain the
found heads and the standard hand-crafted heads from scratch with the same method, data,
epochs and seed, and evaluate both (kNN k=200 and linear probe on the held-out test
split; the probe's weight decay is cross-validated on train). Prints JSON.

    python benchmarks/heads_quality.py --seeds 0 1 2 --search-epochs 3 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from selfnas.api import with_genotype
from selfnas.config import build_config
from selfnas.data import load_dataset
from selfnas.evaluation import evaluate_features
from selfnas.nas.strategies.darts import HeadSearchTrainer
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer


def pretrain_and_eval(cfg, tmp: str, name: str, limited, full) -> dict:
    trainer = Trainer(cfg, RunDir.prepare(f"{tmp}/{name}"), quiet=True, data=limited)
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    result = evaluate_features(trainer.model.backbone, full, torch.device("cpu"), seed=cfg.run.seed)
    return {"knn": result["knn"]["test"], "linear": result["linear"]["test"], "pretrain_s": round(seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--method", default="simsiam")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--search-epochs", type=float, default=3)
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--train-limit", type=int, default=20000)
    ap.add_argument("--set", dest="extra", action="append", default=[], help="extra overrides for the search")
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        full = load_dataset("fashion-mnist", seed=seed)
        limited = load_dataset("fashion-mnist", seed=seed, train_limit=args.train_limit)
        common = [f"method.name={args.method}", f"run.seed={seed}", "run.knn_every=0", "run.device=cpu",
                  "run.eval_at_end=false"]  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            search_overrides = [*common, f"optim.epochs={args.search_epochs}", "search.order=1", *args.extra]
            search_cfg = build_config(overrides=search_overrides)
            t0 = time.perf_counter()
            searcher = HeadSearchTrainer(
                search_cfg, RunDir.prepare(f"{tmp}/search"), quiet=True, data=limited
            )
            searcher.fit()
            search_s = time.perf_counter() - t0
            genotype = searcher.genotype()
            base_cfg = build_config(overrides=[*common, f"optim.epochs={args.epochs}"])
            found_cfg = with_genotype(base_cfg, f"{tmp}/search/genotype.json")
            found = pretrain_and_eval(found_cfg, tmp, "found", limited, full)
            hand = pretrain_and_eval(base_cfg, tmp, "hand", limited, full)
        predictor = [x.op for x in genotype.predictor.layers] if genotype.predictor else None
        rows.append({
            "seed": seed, "search_s": round(search_s, 1),
            "genotype": {"projector": [x.op for x in genotype.projector.layers], "predictor": predictor},
            "found": found, "hand_crafted": hand,
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)

    def mean(key, which):
        return statistics.mean(r[which][key] for r in rows)

    print(json.dumps({
        "benchmark": "heads_quality", "method": args.method, "data": "fashion-mnist",
        "train_images": args.train_limit, "search_epochs": args.search_epochs, "pretrain_epochs": args.epochs,
        "seeds": args.seeds, "search_overrides": args.extra,
        "found_knn_mean": mean("knn", "found"), "hand_knn_mean": mean("knn", "hand_crafted"),
        "found_linear_mean": mean("linear", "found"), "hand_linear_mean": mean("linear", "hand_crafted"),
        "knn_gain_points": 100 * (mean("knn", "found") - mean("knn", "hand_crafted")),
        "rows": rows,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
