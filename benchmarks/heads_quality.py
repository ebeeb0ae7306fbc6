"""Found heads vs hand-crafted heads at the same pretraining budget (NASiam's claim).

For each seed: DARTS-search heads on unlabeled Fashion-MNIST (``--set`` adds search overrides,
e.g. ``search.width=512``), then pretrain the found heads and the method's hand-crafted heads
from scratch with the same method, data, epochs and seed, and evaluate both (kNN k=200 and a
linear probe whose weight decay is cross-validated on train) on val and on the held-out test
split. The hand-crafted run of a (method, seed, epochs, images) is cached in ``--cache`` so that
several search settings share it. Prints one JSON line per seed, then the summary with the
verdict of ``selfnas.render.verdict`` (the rule the quickstart report uses); ``--out`` writes it.

    python benchmarks/heads_quality.py --seeds 0 1 2 --search-epochs 3 --epochs 2 \
        --set search.width=512 --out benchmarks/results_heads_quality_cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from selfnas.api import with_genotype
from selfnas.config import build_config
from selfnas.data import load_dataset
from selfnas.evaluation import evaluate_features
from selfnas.io import atomic_write_json
from selfnas.nas.strategies.darts import HeadSearchTrainer
from selfnas.render.verdict import compare
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer


def pretrain_and_eval(cfg, tmp: str, name: str, limited, full) -> dict:
    trainer = Trainer(cfg, RunDir.prepare(f"{tmp}/{name}"), quiet=True, data=limited)
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    result = evaluate_features(trainer.model.backbone, full, torch.device("cpu"), seed=cfg.run.seed)
    heads = [m for m in (trainer.model.projector, getattr(trainer.model, "predictor", None)) if m is not None]
    return {
        "knn": {s: result["knn"][s] for s in ("val", "test")},
        "linear": {s: result["linear"][s] for s in ("val", "test")},
        "head_params": sum(p.numel() for m in heads for p in m.parameters()),
        "pretrain_s": round(seconds, 1),
    }


def _cached(path: Path | None, key: str, make):
    cache = json.loads(path.read_text()) if path is not None and path.exists() else {}
    if key not in cache:
        cache[key] = make()
        if path is not None:
            atomic_write_json(path, cache)
    return cache[key]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--method", default="simsiam")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--search-epochs", type=float, default=3)
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--train-limit", type=int, default=20000)
    ap.add_argument("--set", dest="extra", action="append", default=[], help="extra overrides for the search")
    ap.add_argument("--train-set", dest="train_extra", action="append", default=[],
                    help="overrides for both pretraining runs (and the search)")  # fmt: skip
    ap.add_argument("--cache", type=Path, default=Path("benchmarks/.heads_quality_hand.json"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        full = load_dataset("fashion-mnist", seed=seed)
        limited = load_dataset("fashion-mnist", seed=seed, train_limit=args.train_limit)
        common = [f"method.name={args.method}", f"run.seed={seed}", "run.knn_every=0", "run.device=cpu",
                  "run.eval_at_end=false", *args.train_extra]  # fmt: skip
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
            key = json.dumps([args.method, seed, args.epochs, args.train_limit, args.train_extra])
            make_hand = partial(pretrain_and_eval, base_cfg, tmp, "hand", limited, full)
            hand = _cached(args.cache, key, make_hand)
        predictor = [x.op for x in genotype.predictor.layers] if genotype.predictor else None
        rows.append({
            "seed": seed, "search_s": round(search_s, 1),
            "genotype": {"projector": [x.op for x in genotype.projector.layers], "predictor": predictor},
            "found": found, "hand_crafted": hand,
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)

    def per_seed(which: str, probe: str, split: str) -> list[float]:
        return [r[which][probe][split] for r in rows]

    def side(which: str) -> dict:
        return {p: {s: per_seed(which, p, s) for s in ("val", "test")} for p in ("knn", "linear")}

    sizes = {w: {"head_params": statistics.mean(r[k]["head_params"] for r in rows)}
             for w, k in (("found", "found"), ("hand", "hand_crafted"))}  # fmt: skip
    verdicts = {s: compare(side("found"), side("hand_crafted"), sizes, split=s) for s in ("val", "test")}

    def gain(probe: str, split: str) -> float:
        pairs = zip(per_seed("found", probe, split), per_seed("hand_crafted", probe, split), strict=True)
        return 100 * statistics.mean(a - b for a, b in pairs)

    summary = {
        "benchmark": "heads_quality", "method": args.method, "data": "fashion-mnist",
        "train_images": args.train_limit, "search_epochs": args.search_epochs, "pretrain_epochs": args.epochs,
        "seeds": args.seeds, "search_overrides": args.extra, "train_overrides": args.train_extra,
        "mean_knn_gain": round(gain("knn", "test"), 3),  # found - hand-crafted, kNN test, points, seed mean
        "gain_points": {f"{p}_{s}": round(gain(p, s), 3) for p in ("knn", "linear") for s in ("val", "test")},
        "verdict": {s: v.sentence for s, v in verdicts.items() if v is not None},
        "rows": rows,
    }  # fmt: skip
    print(json.dumps(summary, indent=2))
    if args.out is not None:
        atomic_write_json(args.out, summary)


if __name__ == "__main__":
    main()
