"""Quality at equal wall time: selfnas SimSiam vs the hand-written lightly baseline.

Both train resnet_small with SimSiam heads on the same Fashion-MNIST training images;
selfnas runs for a fixed number of epochs, the baseline for the same wall-clock time.
Both are evaluated with the same protocol (kNN k=200 and linear probe on frozen
features, reported on the held-out test split). Prints JSON.

    python benchmarks/quality_simsiam.py --epochs 2 --train-limit 20000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace

import torch
from lightly_baseline import LightlySimSiam, train_baseline

from selfnas.config import build_config
from selfnas.data import load_dataset
from selfnas.evaluation import evaluate_features
from selfnas.models.backbones import create_backbone
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--train-limit", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = load_dataset("fashion-mnist", seed=args.seed)
    limited = load_dataset("fashion-mnist", seed=args.seed, train_limit=args.train_limit)
    cfg = build_config(
        overrides=[
            f"optim.epochs={args.epochs}",
            f"optim.batch_size={args.batch_size}",
            "run.knn_every=0",
            "run.eval_at_end=false",
            f"run.seed={args.seed}",
            "run.device=cpu",
        ]
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        trainer = Trainer(cfg, RunDir.prepare(f"{tmp}/run"), quiet=True, data=limited)
        trainer.fit()
        seconds = time.perf_counter() - t0
        ours = evaluate_features(trainer.model.backbone, data, torch.device("cpu"), seed=args.seed)

    torch.manual_seed(args.seed)
    model = LightlySimSiam(create_backbone("resnet_small", in_channels=1))
    base_run = train_baseline(
        model,
        limited.train.images,
        limited.mean,
        limited.std,
        args.batch_size,
        max_seconds=seconds,
        workers=args.workers,
        seed=args.seed,
    )
    base = evaluate_features(model.backbone, replace(data), torch.device("cpu"), seed=args.seed)
    print(
        json.dumps(
            {
                "benchmark": "quality_simsiam",
                "data": "fashion-mnist",
                "train_images": len(limited.train),
                "backbone": "resnet_small",
                "selfnas": {
                    "epochs": args.epochs,
                    "seconds": round(seconds, 1),
                    "knn_test": ours["knn"]["test"],
                    "linear_test": ours["linear"]["test"],
                },
                "baseline": {
                    "steps": base_run["steps"],
                    "epochs": base_run["steps"] * args.batch_size / len(limited.train),
                    "seconds": round(base_run["seconds"], 1),
                    "knn_test": base["knn"]["test"],
                    "linear_test": base["linear"]["test"],
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
