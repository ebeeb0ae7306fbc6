"""How much of this machine's matmul peak one SimSiam training step reaches.

1. Peak: fp32 ``torch.mm`` of large square matrices (2 n^3 FLOPs each), best of several, measured
   before and after the steps (the better is kept: these machines are shared).
2. FLOPs of one training step of the default config (SimSiam, ``resnet_small``, Fashion-MNIST 28 px,
   batch 256, heads 512/128/64): forward + backward counted by ``torch.utils.flop_counter.FlopCounterMode``
   (convolutions, matmuls, ``bmm``; element-wise ops, BatchNorm and the optimizer are not counted, so
   the figure is the dense-compute work the peak is measured on).
3. Time of one step two ways: through the real :class:`Trainer` (its own ``pairs_per_s`` over windows
   of ``--log-every`` steps: augmentation, forward, backward, optimizer, metrics), and the model step
   alone (forward + backward + SGD on fixed augmented views), best of several. The two alternate
   for ``--repeats`` rounds and the best of each is kept (bursts of other load on a shared machine).

Prints JSON with the achieved GFLOP/s of both and their fraction of the matmul peak.

    python benchmarks/flops.py            # 2 rounds of: 10 model steps, 40 trainer steps
    python benchmarks/flops.py --quick    # 2 rounds of: 4 model steps, 12 trainer steps
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from selfnas.config import build_config
from selfnas.data import load_dataset
from selfnas.io import read_jsonl
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer


def matmul_peak(n: int, repeats: int) -> dict[str, float]:
    """Best fp32 GFLOP/s of ``torch.mm`` on n x n matrices."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return {"n": n, "repeats": repeats, "best_s": best, "gflops": 2 * n**3 / best / 1e9}


def _trainer(data, steps: int, log_every: int, tmp: str) -> Trainer:
    bs = 256
    cfg = build_config(
        overrides=[
            "optim.epochs=1",
            f"optim.batch_size={bs}",
            "run.knn_every=0",
            "run.eval_at_end=false",
            f"run.log_every={log_every}",
            f"run.checkpoint_every={10**6}",
            "run.device=cpu",
        ]
    )
    sub = data.train.subset(torch.arange(steps * bs))
    return Trainer(cfg, RunDir.prepare(f"{tmp}/run"), quiet=True, data=replace(data, train=sub))


def count_step_flops(trainer: Trainer, x1: torch.Tensor, x2: torch.Tensor) -> dict[str, int]:
    """FLOPs of forward and of backward of one step of ``trainer.model``."""
    model = trainer.model
    with FlopCounterMode(display=False) as fwd:
        out = model(x1, x2)
    with FlopCounterMode(display=False) as bwd:
        out.loss.backward()
    model.zero_grad(set_to_none=True)
    return {"forward": fwd.get_total_flops(), "backward": bwd.get_total_flops()}


def time_model_step(trainer: Trainer, x1: torch.Tensor, x2: torch.Tensor, repeats: int) -> float:
    """Best seconds of forward + backward + optimizer step (fixed views; the weights do move)."""
    best = float("inf")
    for _ in range(repeats + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        out = trainer.step_fn(x1, x2)
        trainer.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        trainer.optimizer.step()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=40, help="trainer steps (the first window is a warm-up)")
    ap.add_argument("--log-every", type=int, default=8, help="steps per timing window of the trainer")
    ap.add_argument("--model-repeats", type=int, default=10)
    ap.add_argument("--matmul-n", type=int, default=2048)
    ap.add_argument("--matmul-repeats", type=int, default=10)
    ap.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="alternate model-only and trainer timing this often; keep the best",
    )
    ap.add_argument("--quick", action="store_true", help="12 trainer steps, 4 model steps, 5 matmuls")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.log_every, args.model_repeats, args.matmul_repeats = 12, 4, 4, 5

    load_before = os.getloadavg()[0]
    first_peak = matmul_peak(args.matmul_n, args.matmul_repeats)
    data = load_dataset("fashion-mnist", seed=0)
    model_times, windows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):  # alternate, so that a burst of other load hits both alike
            trainer = _trainer(data, args.steps, args.log_every, f"{tmp}/m{repeat}")
            # one step's views, exactly as the trainer makes them (channels_last as configured)
            g = torch.Generator().manual_seed(0)
            x1, x2 = trainer.augment(trainer.images[:256], g)
            if trainer.config.run.channels_last:
                x1 = x1.contiguous(memory_format=torch.channels_last)
                x2 = x2.contiguous(memory_format=torch.channels_last)
            flops = count_step_flops(trainer, x1, x2)
            model_times.append(time_model_step(trainer, x1, x2, args.model_repeats))

            trainer = _trainer(data, args.steps, args.log_every, f"{tmp}/t{repeat}")  # fresh weights
            trainer.fit()
            run = [r["pairs_per_s"] for r in read_jsonl(trainer.run.metrics) if r["kind"] == "step"]
            windows += run[1:] or run  # the first window holds the warm-up
    model_s = min(model_times)
    trainer_pairs_per_s = max(windows)
    trainer_s = 256 / trainer_pairs_per_s
    # the machine may be shared: the peak is the better of a measurement before and after the steps
    peak = max(first_peak, matmul_peak(args.matmul_n, args.matmul_repeats), key=lambda p: p["gflops"])
    step_flops = flops["forward"] + flops["backward"]

    def achieved(seconds: float) -> dict[str, float]:
        gflops = step_flops / seconds / 1e9
        return {
            "step_s": round(seconds, 4),
            "gflops": round(gflops, 2),
            "fraction_of_peak": round(gflops / peak["gflops"], 3),
        }

    print(
        json.dumps(
            {
                "benchmark": "flops",
                "method": "simsiam",
                "backbone": "resnet_small",
                "data": "fashion-mnist 28 px",
                "batch_size": 256,
                "device": "cpu",
                "threads": torch.get_num_threads(),
                "machine": platform.machine(),
                "torch": torch.__version__,
                "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
                "matmul_peak_gflops": round(peak["gflops"], 2),
                "matmul": peak,
                "step_gflop": round(step_flops / 1e9, 3),
                "step_gflop_forward": round(flops["forward"] / 1e9, 3),
                "step_gflop_backward": round(flops["backward"] / 1e9, 3),
                "trainer": {
                    **achieved(trainer_s),
                    "steps": args.steps,
                    "rounds": args.repeats,
                    "windows_pairs_per_s": windows,
                },
                "model_step_only": {
                    **achieved(model_s),
                    "repeats": args.model_repeats,
                    "best_s_per_round": model_times,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
