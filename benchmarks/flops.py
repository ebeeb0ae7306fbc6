"""How much of this machine's matmul peak one SimSiam training step reaches.

1. FLOPs of one training step of the default config (SimSiam, ``resnet_small``, Fashion-MNIST 28 px,
   batch 256, heads 512/128/64): forward + backward counted by ``torch.utils.flop_counter.FlopCounterMode``
   (convolutions, matmuls, ``bmm``; element-wise ops, BatchNorm and the optimizer are not counted, so
   the figure is the dense-compute work the peak is measured on).
2. ``--rounds`` rounds, each measuring back to back, so that peak and steps share a window:
   a. the peak: fp32 ``torch.mm`` of n x n matrices (2 n^3 FLOPs), best of ``--matmul-repeats``;
   b. the bare model step: forward + backward of the model on one fixed pair of augmented views
      (exactly the work counted in 1.), median of ``--model-repeats`` after one warm-up;
   c. the trainer step: a fresh :class:`Trainer` run of ``--steps`` steps (augmentation, forward,
      backward, optimizer, metrics), timed by its own metric windows of ``--log-every`` steps with
      the first (warm-up) window left out (``fair.timed_fit``).
   All at ``--threads`` intra-op threads (default: the cores; ``run.threads`` pinned to it).

Prints JSON: per round, the three figures and each step's fraction of that round's peak; over the
rounds, min and median of each, and the fraction of peak of the trainer step and of the model step
(the median of the per-round fractions, and best step over best peak).

    python benchmarks/flops.py            # 5 rounds of: 3 matmuls, 5 model steps, 24 trainer steps
    python benchmarks/flops.py --quick    # 3 rounds of: 3 matmuls, 3 model steps, 12 trainer steps
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace

import torch
from fair import emit, load_average, machine_record, summary, timed_fit
from torch.utils.flop_counter import FlopCounterMode

from selfnas.config import build_config
from selfnas.data import load_dataset
from selfnas.device import cpu_cores
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer

BATCH = 256


def matmul_peak_s(n: int, repeats: int) -> float:
    """Best seconds of one fp32 ``torch.mm`` of n x n matrices (after one warm-up)."""
    a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return best


def make_trainer(data, steps: int, log_every: int, threads: int, tmp: str) -> Trainer:
    cfg = build_config(
        overrides=[
            "optim.epochs=1",
            f"optim.batch_size={BATCH}",
            "run.knn_every=0",
            "run.eval_at_end=false",
            f"run.log_every={log_every}",
            f"run.checkpoint_every={10**6}",
            "run.device=cpu",
            f"run.threads={threads}",
        ]
    )
    sub = data.train.subset(torch.arange(steps * BATCH))
    return Trainer(cfg, RunDir.prepare(tmp), quiet=True, data=replace(data, train=sub))


def step_views(trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    """One step's views, exactly as the trainer makes them (channels_last as configured)."""
    x1, x2 = trainer.augment(trainer.images[:BATCH], torch.Generator().manual_seed(0))
    if trainer.config.run.channels_last:
        x1 = x1.contiguous(memory_format=torch.channels_last)
        x2 = x2.contiguous(memory_format=torch.channels_last)
    return x1, x2  # B x C x H x W each


def count_step_flops(trainer: Trainer, x1: torch.Tensor, x2: torch.Tensor) -> dict[str, int]:
    """FLOPs of forward and of backward of one step of ``trainer.model``."""
    model = trainer.model
    with FlopCounterMode(display=False) as fwd:
        out = model(x1, x2)
    with FlopCounterMode(display=False) as bwd:
        out.loss.backward()
    model.zero_grad(set_to_none=True)
    return {"forward": fwd.get_total_flops(), "backward": bwd.get_total_flops()}


def model_step_s(trainer: Trainer, x1: torch.Tensor, x2: torch.Tensor, repeats: int) -> float:
    """Median seconds of forward + backward on fixed views (after one warm-up); no optimizer step,
    so the weights stay put and the work is exactly what :func:`count_step_flops` counts."""
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        trainer.step_fn(x1, x2).loss.backward()
        times.append(time.perf_counter() - t0)
        trainer.model.zero_grad(set_to_none=True)
    return statistics.median(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of peak, model step, trainer")
    ap.add_argument("--steps", type=int, default=24, help="trainer steps a round (the first window: warm-up)")
    ap.add_argument("--log-every", type=int, default=8, help="steps per timing window of the trainer")
    ap.add_argument("--model-repeats", type=int, default=5)
    ap.add_argument("--matmul-n", type=int, default=2048)
    ap.add_argument("--matmul-repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the cores)")
    ap.add_argument("--quick", action="store_true", help="3 rounds; 12 trainer steps, 3 model steps")
    ap.add_argument("--out", help="also write the JSON to this file (atomically)")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.steps, args.log_every, args.model_repeats = 3, 12, 4, 3
    load_start = load_average(warn=True)
    threads = args.threads or cpu_cores()
    torch.set_num_threads(threads)  # the matmul runs at the trainer's count
    data = load_dataset("fashion-mnist", seed=0)
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            peak_s = matmul_peak_s(args.matmul_n, args.matmul_repeats)
            trainer = make_trainer(data, args.steps, args.log_every, threads, f"{tmp}/m{r}")
            x1, x2 = step_views(trainer)
            flops = count_step_flops(trainer, x1, x2)  # the same every round
            model_s = model_step_s(trainer, x1, x2, args.model_repeats)
            trainer = make_trainer(data, args.steps, args.log_every, threads, f"{tmp}/t{r}")  # fresh
            run = timed_fit(trainer, warmup_windows=1)
            rounds.append({"peak_s": peak_s, "model_step_s": model_s, "trainer_step_s": run["step_s"],
                           "trainer_windows_pairs_per_s": run["windows_pairs_per_s"]})  # fmt: skip
    step_flops = flops["forward"] + flops["backward"]
    peak_flops = 2 * args.matmul_n**3

    def gflops(flop: int, seconds: float) -> float:
        return flop / seconds / 1e9

    for r in rounds:
        r["peak_gflops"] = round(gflops(peak_flops, r["peak_s"]), 2)
        for key in ("model_step", "trainer_step"):
            r[f"{key}_fraction_of_peak"] = round(gflops(step_flops, r[f"{key}_s"]) / r["peak_gflops"], 4)

    def achieved(key: str) -> dict:
        seconds = [r[f"{key}_s"] for r in rounds]
        best = gflops(step_flops, min(seconds)) / max(r["peak_gflops"] for r in rounds)
        return {
            "step_s": summary(seconds),
            "gflops": summary([gflops(step_flops, s) for s in seconds], 2),
            "fraction_of_peak": {
                "median_of_rounds": round(statistics.median(r[f"{key}_fraction_of_peak"] for r in rounds), 4),
                "best_step_over_best_peak": round(best, 4),
            },
        }

    emit(
        {
            "benchmark": "flops",
            "method": "simsiam",
            "backbone": "resnet_small",
            "data": "fashion-mnist 28 px",
            "batch_size": BATCH,
            "device": "cpu",
            "threads": threads,
            "rounds": args.rounds,
            "step_gflop": round(step_flops / 1e9, 3),
            "step_gflop_forward": round(flops["forward"] / 1e9, 3),
            "step_gflop_backward": round(flops["backward"] / 1e9, 3),
            "matmul": {
                "n": args.matmul_n,
                "repeats_per_round": args.matmul_repeats,
                "peak_s": summary([r["peak_s"] for r in rounds], 5),
                "gflops": summary([r["peak_gflops"] for r in rounds], 2),
            },
            "trainer": {
                **achieved("trainer_step"),
                "steps_per_round": args.steps,
                "warmup_steps_per_round": args.log_every,
                "measures": "augmentation + forward + backward + optimizer + metrics, per step",
            },
            "model_step_only": {
                **achieved("model_step"),
                "repeats_per_round": args.model_repeats,
                "measures": "forward + backward on fixed views (the counted FLOPs), median of a round",
            },
            "per_round": rounds,
            **machine_record(),
            "load_average": {"start": load_start, "end": load_average()},
        },
        args.out,
    )


if __name__ == "__main__":
    main()
