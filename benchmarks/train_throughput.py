"""Training throughput: selfnas vs the hand-written lightly baseline, same process, alternating.

Same backbone (resnet_small), method (SimSiam), heads (512/128/64), batch size, data (Fashion-MNIST)
and optimizer (selfnas's: peak LR, weight decay without BatchNorm and biases, warm-up + cosine).
Both sides leave ``--warmup-steps`` steps of start-up out of the timed window and are timed over
``--steps`` steps after it:

- selfnas: its :class:`Trainer` with ``run.log_every`` = the warm-up, so that the first metric
  window is the warm-up; pairs/s are those of the later windows (``fair.timed_fit``). Threads are
  pinned to the core count (its automatic choice reads the load average), channels_last as default.
- baseline (``lightly_baseline``): channels_last model and batches, two backbone passes (lightly's
  way), the (DataLoader workers, main threads) setting picked by timing every candidate at the start
  of the run (``calibrate_loader``; all figures in the JSON).

The two alternate ``--repeats`` times (selfnas, baseline, selfnas, ...); each side reports the median
and min / max of its repeats, and ``ratio`` = median selfnas / median baseline. ``--compile`` gives
both the same lever: ``run.compile=true`` for selfnas, ``torch.compile`` of the lightly model; so
does ``--precision bf16``: ``run.precision=bf16`` for selfnas, its forward and loss under
``torch.autocast("cpu", torch.bfloat16)`` for the baseline (refused on a CPU without native bf16
unless ``--emulated``, whose timings then say nothing of a bf16 CPU).

    python benchmarks/train_throughput.py --steps 40 --warmup-steps 10 --repeats 3 --out results.json
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace

import torch
from fair import emit, load_average, machine_record, precision_record, summary, timed_fit
from lightly_baseline import LightlySimSiam, calibrate_loader, loader_candidates, train_baseline

from selfnas.config import build_config
from selfnas.data import load_dataset
from selfnas.device import cpu_cores
from selfnas.models.backbones import create_backbone
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer, make_plan


def run_selfnas(cfg, data, tmp: str) -> dict:
    trainer = Trainer(cfg, RunDir.prepare(tmp), quiet=True, data=data)
    run = timed_fit(trainer, warmup_windows=1)
    per_view = trainer.model.per_view_bn
    run["per_view_bn"] = trainer.model.paper_per_view_bn if per_view is None else per_view
    run["threads"] = torch.get_num_threads()
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40, help="timed steps per run (a multiple of the warm-up)")
    ap.add_argument("--warmup-steps", type=int, default=10, help="steps of each run left out of the timing")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs of each side")
    ap.add_argument("--threads", type=int, default=None, help="selfnas's run.threads (default: the cores)")
    ap.add_argument("--calibration-steps", type=int, default=8, help="timed steps per loader candidate")
    ap.add_argument("--calibration-warmup", type=int, default=4, help="warm-up steps per loader candidate")
    ap.add_argument("--compile", action="store_true", help="selfnas run.compile, torch.compile of lightly")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="both sides: bf16 autocast")
    ap.add_argument("--emulated", action="store_true", help="allow bf16 on a CPU without native bf16")
    ap.add_argument("--out", help="also write the JSON to this file (atomically)")
    args = ap.parse_args()
    if args.steps % args.warmup_steps:
        ap.error("--steps must be a multiple of --warmup-steps (the trainer's log window)")
    precision = precision_record(args.precision, args.emulated)
    load_start = load_average(warn=True)
    cores = cpu_cores()
    threads = args.threads or cores
    bs, total = args.batch_size, args.warmup_steps + args.steps
    data = load_dataset("fashion-mnist", seed=0)
    data = replace(data, train=data.train.subset(torch.arange(total * bs)))  # one epoch of `total` steps
    cfg = build_config(
        overrides=[
            "optim.epochs=1",
            f"optim.batch_size={bs}",
            "run.knn_every=0",
            "run.eval_at_end=false",
            f"run.log_every={args.warmup_steps}",
            f"run.checkpoint_every={10**6}",
            "run.device=cpu",
            f"run.threads={threads}",
            "run.channels_last=true",
            f"run.compile={str(args.compile).lower()}",
            f"run.precision={args.precision}",
        ]
    )
    plan = make_plan(cfg, len(data.train))  # the baseline's schedule: the same steps, the same plan
    imgs = data.train.images

    def fresh_model() -> LightlySimSiam:
        torch.manual_seed(0)
        return LightlySimSiam(create_backbone("resnet_small", in_channels=data.train.channels))

    setting, table = calibrate_loader(
        fresh_model(), imgs, data.mean, data.std, cfg, plan, loader_candidates(cores),
        warmup_steps=args.calibration_warmup, steps=args.calibration_steps, compile=args.compile,
        precision=args.precision,
    )  # fmt: skip
    ours, base = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):  # alternate, so that a burst of other load hits both alike
            ours.append(run_selfnas(cfg, data, f"{tmp}/run{repeat}"))
            base.append(
                train_baseline(
                    fresh_model(),
                    imgs,
                    data.mean,
                    data.std,
                    cfg,
                    plan,
                    total,
                    setting,
                    warmup_steps=args.warmup_steps,
                    compile=args.compile,
                    precision=args.precision,
                )  # fmt: skip
            )
    ours_pps = summary([r["pairs_per_s"] for r in ours], 1)
    base_pps = summary([r["pairs_per_s"] for r in base], 1)
    emit(
        {
            "benchmark": "train_throughput",
            "method": "simsiam",
            "backbone": "resnet_small",
            "data": "fashion-mnist 28 px",
            "device": "cpu",
            "batch_size": bs,
            **precision,
            "timed_steps": args.steps,
            "warmup_steps": args.warmup_steps,
            "repeats": args.repeats,
            "order": "alternating: selfnas, baseline, selfnas, baseline, ...",
            "optimizer": {
                "kind": "selfnas's: SGD momentum 0.9, no weight decay on BatchNorm and biases",
                "peak_lr": plan.peak_lr,
                "weight_decay": plan.weight_decay,
                "schedule": f"linear warm-up {plan.warmup_steps} steps + cosine to step {plan.total_steps}",
            },
            "selfnas": {
                "threads": threads,
                "channels_last": cfg.run.channels_last,
                "compile": cfg.run.compile,
                "precision": cfg.run.precision,
                "per_view_bn": ours[0]["per_view_bn"],
                "views": "both views as one batch through the backbone, batched uint8 augmentation",
                "batch": bs,
                "timed_steps": args.steps,
                "warmup_steps": args.warmup_steps,
                "timing": "Trainer metric windows of log_every steps, the first (warm-up) dropped",
                "pairs_per_s": ours_pps,
            },
            "baseline": {
                "channels_last": True,
                "workers": setting.workers,
                "threads": setting.threads,
                "worker_threads": 1,
                "compile": args.compile,
                "precision": args.precision,
                "autocast": "torch.autocast('cpu', torch.bfloat16) around forward + loss"
                if args.precision == "bf16"
                else None,
                "views": "lightly heads + loss, one backbone pass per view, torchvision v2 per sample",
                "batch": bs,
                "timed_steps": args.steps,
                "warmup_steps": args.warmup_steps,
                "timing": "wall clock from the end of the warm-up steps to the end of the run",
                "calibration": {
                    "warmup_steps": args.calibration_warmup,
                    "timed_steps": args.calibration_steps,
                    "candidates": table,
                },
                "pairs_per_s": base_pps,
            },
            "selfnas_pairs_per_s": ours_pps["median"],
            "baseline_pairs_per_s": base_pps["median"],
            "ratio": round(ours_pps["median"] / base_pps["median"], 3),
            "runs": {"selfnas": ours, "baseline": base},
            **machine_record(),
            "load_average": {"start": load_start, "end": load_average()},
        },
        args.out,
    )


if __name__ == "__main__":
    main()
