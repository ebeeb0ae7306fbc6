"""Quality at equal wall time: selfnas SimSiam vs the hand-written lightly baseline.

Both train resnet_small with SimSiam heads on the same Fashion-MNIST training images with the same
optimizer (selfnas's: peak LR, momentum, weight decay without BatchNorm and biases) and the same
schedule (linear warm-up of ``optim.warmup_epochs`` epochs, then cosine to zero at the end of each
side's own budget).

Equal wall time, in this form: selfnas trains ``--epochs`` epochs and its wall time T is measured
(Trainer construction + fit: start-up, the end-of-run writes and a compile are in it). The baseline's
budget is the number of steps it manages in T at the rate measured by the loader calibration that
picks its (DataLoader workers, main threads) setting (``lightly_baseline.calibrate_loader``), and its
schedule ends at those steps. Its start-up is not in that rate, so it gets slightly more than T; the
JSON reports the wall time it took. Both are evaluated with the same protocol (kNN k=200 and linear
probe on frozen features, reported on the held-out test split). Prints JSON.

    python benchmarks/quality_simsiam.py --epochs 2 --train-limit 20000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace

import torch
from fair import emit, load_average, machine_record
from lightly_baseline import LightlySimSiam, calibrate_loader, loader_candidates, train_baseline

from selfnas.config import build_config
from selfnas.data import load_dataset
from selfnas.device import cpu_cores
from selfnas.evaluation import evaluate_features
from selfnas.models.backbones import create_backbone
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer, make_plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--train-limit", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="selfnas's run.threads (default: the cores)")
    ap.add_argument("--calibration-steps", type=int, default=8, help="timed steps per loader candidate")
    ap.add_argument("--calibration-warmup", type=int, default=4, help="warm-up steps per loader candidate")
    ap.add_argument(
        "--eval-limit", type=int, default=None, help="first N images of each split to evaluate (smoke runs)"
    )
    ap.add_argument("--out", help="also write the JSON to this file (atomically)")
    args = ap.parse_args()
    load_start = load_average(warn=True)
    cores = cpu_cores()
    threads = args.threads or cores
    data = load_dataset("fashion-mnist", seed=args.seed)
    if args.eval_limit:
        first = torch.arange(args.eval_limit)
        data = replace(data, train=data.train.subset(first), val=None, test=data.test.subset(first))
    limited = load_dataset("fashion-mnist", seed=args.seed, train_limit=args.train_limit)
    cfg = build_config(
        overrides=[
            f"optim.epochs={args.epochs}",
            f"optim.batch_size={args.batch_size}",
            "run.knn_every=0",
            "run.eval_at_end=false",
            f"run.seed={args.seed}",
            "run.device=cpu",
            f"run.threads={threads}",
            "run.channels_last=true",
        ]
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        trainer = Trainer(cfg, RunDir.prepare(f"{tmp}/run"), quiet=True, data=limited)
        trainer.fit()
        seconds = time.perf_counter() - t0
        per_view = trainer.model.per_view_bn
        ours = evaluate_features(trainer.model.backbone, data, torch.device("cpu"), seed=args.seed)
    ours_plan = trainer.plan

    def fresh_model() -> LightlySimSiam:
        torch.manual_seed(args.seed)
        return LightlySimSiam(create_backbone("resnet_small", in_channels=limited.train.channels))

    n, bs = len(limited.train), args.batch_size
    images = limited.train.images
    setting, table = calibrate_loader(
        fresh_model(), images, limited.mean, limited.std, cfg, ours_plan, loader_candidates(cores),
        warmup_steps=args.calibration_warmup, steps=args.calibration_steps,
    )  # fmt: skip
    rate = max(r["pairs_per_s"] for r in table)
    steps = max(1, round(seconds * rate / bs))  # the steps the baseline manages in selfnas's wall time
    spe = n // bs
    base_cfg = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"epochs": steps / spe})})
    plan = make_plan(base_cfg, n)  # selfnas's own rule: warm-up epochs, cosine to the end of the budget
    model = fresh_model()
    base_run = train_baseline(
        model, images, limited.mean, limited.std, base_cfg, plan, steps, setting, seed=args.seed
    )
    base = evaluate_features(model.backbone, data, torch.device("cpu"), seed=args.seed)

    def schedule(p) -> str:
        return f"linear warm-up {p.warmup_steps} steps + cosine to 0 at step {p.total_steps}"

    emit(
        {
            "benchmark": "quality_simsiam",
            "data": "fashion-mnist",
            "train_images": n,
            "eval_limit": args.eval_limit,
            "backbone": "resnet_small",
            "batch_size": bs,
            "equal_wall_time": "baseline steps = selfnas wall time x the baseline's calibrated pairs/s "
            "/ batch; each side's schedule ends at its own steps",
            "optimizer": {
                "kind": "selfnas's for both: SGD momentum 0.9, no weight decay on BatchNorm and biases",
                "peak_lr": ours_plan.peak_lr,
                "weight_decay": ours_plan.weight_decay,
                "warmup_epochs": cfg.optim.warmup_epochs,
            },
            "selfnas": {
                "epochs": args.epochs,
                "steps": ours_plan.total_steps,
                "schedule": schedule(ours_plan),
                "threads": threads,
                "channels_last": cfg.run.channels_last,
                "compile": cfg.run.compile,
                "per_view_bn": trainer.model.paper_per_view_bn if per_view is None else per_view,
                "seconds": round(seconds, 1),
                "seconds_measures": "Trainer construction + fit",
                "knn_test": ours["knn"]["test"],
                "linear_test": ours["linear"]["test"],
            },
            "baseline": {
                "steps": steps,
                "epochs": round(steps / spe, 3),
                "schedule": schedule(plan),
                "channels_last": True,
                "workers": setting.workers,
                "threads": setting.threads,
                "worker_threads": 1,
                "compile": False,
                "calibration": {
                    "warmup_steps": args.calibration_warmup,
                    "timed_steps": args.calibration_steps,
                    "candidates": table,
                    "pairs_per_s_used": rate,
                },
                "seconds": round(base_run["total_s"], 1),
                "seconds_measures": "train_baseline: DataLoader start-up + all steps",
                "knn_test": base["knn"]["test"],
                "linear_test": base["linear"]["test"],
            },
            **machine_record(),
            "load_average": {"start": load_start, "end": load_average()},
        },
        args.out,
    )


if __name__ == "__main__":
    main()
