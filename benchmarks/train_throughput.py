"""Training throughput: selfnas vs the hand-written lightly baseline, same run.

Same backbone (resnet_small), method (SimSiam), heads (512/128/64), batch size and data
(Fashion-MNIST). Prints JSON with pairs/s of each and the ratio selfnas / baseline.

    python benchmarks/train_throughput.py --steps 40 --batch-size 256
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import torch
from lightly_baseline import LightlySimSiam, train_baseline

from selfnas.config import build_config
from selfnas.data import load_dataset
from selfnas.models.backbones import create_backbone
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer


def run_selfnas(data, steps: int, batch_size: int, device: str) -> dict[str, float]:
    n = steps * batch_size
    cfg = build_config(
        overrides=[
            "optim.epochs=1",
            f"optim.batch_size={batch_size}",
            f"data.train_limit={n}",
            "run.knn_every=0",
            "run.eval_at_end=false",
            f"run.log_every={steps}",
            f"run.checkpoint_every={10**6}",
            f"run.device={device}",
        ]
    )
    with tempfile.TemporaryDirectory() as tmp:
        sub = data.train.subset(torch.arange(n))
        from dataclasses import replace

        trainer = Trainer(cfg, RunDir.prepare(f"{tmp}/run"), quiet=True, data=replace(data, train=sub))
        t0 = time.perf_counter()
        trainer.fit()
        elapsed = time.perf_counter() - t0
    return {"steps": steps, "seconds": elapsed, "pairs_per_s": steps * batch_size / elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the baseline")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--repeats", type=int, default=2, help="alternate the two this many times; report the best"
    )
    args = ap.parse_args()
    data = load_dataset("fashion-mnist", seed=0)
    ours, base = [], []
    for _ in range(args.repeats):
        ours.append(run_selfnas(data, args.steps, args.batch_size, args.device))
        torch.manual_seed(0)
        model = LightlySimSiam(create_backbone("resnet_small", in_channels=1))
        imgs = data.train.images[: args.steps * args.batch_size]
        base.append(
            train_baseline(
                model, imgs, data.mean, data.std, args.batch_size, max_steps=args.steps, workers=args.workers
            )
        )
    best_ours = max(r["pairs_per_s"] for r in ours)
    best_base = max(r["pairs_per_s"] for r in base)
    print(
        json.dumps(
            {
                "benchmark": "train_throughput",
                "method": "simsiam",
                "backbone": "resnet_small",
                "data": "fashion-mnist",
                "batch_size": args.batch_size,
                "steps": args.steps,
                "device": args.device,
                "threads": torch.get_num_threads(),
                "machine": platform.machine(),
                "baseline": "lightly heads+loss, torchvision v2 per-sample aug, "
                f"DataLoader workers={args.workers}",
                "selfnas_pairs_per_s": round(best_ours, 1),
                "baseline_pairs_per_s": round(best_base, 1),
                "ratio": round(best_ours / best_base, 3),
                "runs": {"selfnas": ours, "baseline": base},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
