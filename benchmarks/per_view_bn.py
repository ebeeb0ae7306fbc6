"""Per-view BatchNorm on vs off: SimSiam resnet_small on Fashion-MNIST, kNN on val and test.

For each seed, pretrain twice with everything equal but ``method.per_view_bn`` (true: each view
normalised with its own BatchNorm statistics, as SimSiam's paper; false: one set of statistics
over both views, the old behaviour), then evaluate kNN (k=200) on frozen features, the bank a
seeded subset of the training split. First, a rough speed check: training steps of the same
model on random inputs, alternating on and off, median seconds per step. Prints a JSON line per
run and the summary; writes the summary to ``--out``.

    python benchmarks/per_view_bn.py --seeds 0 1 2 --epochs 3 --train-limit 10000
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import selfnas
from selfnas.config import build_config
from selfnas.io import atomic_write_json
from selfnas.training.builder import build_method


def speed(config, steps: int, batch: int) -> dict:
    """Median seconds of a SimSiam training step (forward, backward, SGD) with per-view
    BatchNorm on and off, the two settings alternating step by step on one model; channels_last
    as the trainer has it by default."""
    torch.manual_seed(0)
    model = build_method(config, in_channels=1).train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    x1, x2 = (torch.randn(batch, 1, 28, 28, generator=g) for _ in range(2))
    x1, x2 = (x.contiguous(memory_format=torch.channels_last) for x in (x1, x2))
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(2 * (steps + 1)):
        model.per_view_bn = i % 2 == 0
        t0 = time.perf_counter()
        loss = model(x1, x2).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:  # the first step of each setting warms up
            times[model.per_view_bn].append(time.perf_counter() - t0)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    return {"steps_each": steps, "batch": batch, "on_s": round(on, 4), "off_s": round(off, 4),
            "cost_percent": round(100 * (on / off - 1), 1)}  # fmt: skip


def run_one(overrides: list[str], tmp: str, name: str) -> dict:
    config = build_config(overrides=overrides)
    t0 = time.perf_counter()
    last = selfnas.train(config, out=f"{tmp}/{name}", quiet=True)
    pretrain_s = time.perf_counter() - t0
    result = selfnas.evaluate(last["run_dir"], linear=False, quiet=True)
    return {
        "knn_val": result["knn"]["val"], "knn_test": result["knn"]["test"], "final_loss": last.get("loss"),
        "pretrain_s": round(pretrain_s, 1),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--train-limit", type=int, default=10000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--bank", type=int, default=10000, help="kNN bank: seeded subset of the train split")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--speed-steps", type=int, default=10, help="timed steps per setting; 0 = skip")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_per_view_bn.json")))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    common = [
        "method.name=simsiam", "model.backbone=resnet_small", "data.name=fashion-mnist",
        f"data.train_limit={args.train_limit}", f"optim.epochs={args.epochs}",
        f"optim.batch_size={args.batch_size}",
        "run.device=cpu", f"run.threads={args.threads}", "run.knn_every=0", "run.eval_at_end=false",
        f"run.eval_train_limit={args.bank}", "run.checkpoint_every=100000",
    ]  # fmt: skip
    summary: dict = {
        "benchmark": "per_view_bn", "method": "simsiam", "backbone": "resnet_small", "data": "fashion-mnist",
        "train_images": args.train_limit, "epochs": args.epochs, "batch_size": args.batch_size,
        "knn_bank": args.bank, "threads": args.threads, "seeds": [], "rows": [],
        "torch": torch.__version__,
    }  # fmt: skip
    if args.speed_steps:
        summary["speed"] = speed(build_config(overrides=common), args.speed_steps, args.batch_size)
        print(json.dumps({"speed": summary["speed"]}), flush=True)
    for seed in args.seeds:
        row: dict = {"seed": seed}
        with tempfile.TemporaryDirectory() as tmp:
            for per_view in (True, False):
                overrides = [*common, f"run.seed={seed}", f"method.per_view_bn={str(per_view).lower()}"]
                row["on" if per_view else "off"] = run_one(overrides, tmp, f"pv{int(per_view)}")
        summary["rows"].append(row)
        summary["seeds"].append(seed)
        print(json.dumps(row), flush=True)
        rows = summary["rows"]
        for split in ("val", "test"):
            on = statistics.mean(r["on"][f"knn_{split}"] for r in rows)
            off = statistics.mean(r["off"][f"knn_{split}"] for r in rows)
            summary[f"knn_{split}_mean"] = {"on": on, "off": off, "gain_points": round(100 * (on - off), 2)}
        atomic_write_json(Path(args.out), summary)  # after every seed: a cut-short run keeps its seeds
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
