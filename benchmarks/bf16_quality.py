"""Quality at equal steps, fp32 vs bf16 autocast (``run.precision``, issue 35): SimSiam and SimCLR,
several seeds, the quickstart budget and a longer one.

Every run is the quickstart's pretraining (``selfnas/configs/quickstart.yaml``: resnet_small width
16 on 20,000 Fashion-MNIST images, 2 epochs at batch 256) on the CPU with the method, the seed, the
precision and the epochs (the quickstart's times each ``--budgets`` factor) set; everything else is
equal, the thread count pinned. Each trained backbone is then probed as ``selfnas eval RUN`` does:
kNN (k=200) and the cross-validated linear probe on val and test, the features computed in the
run's own precision.

Each run is one run directory, ``RUNS/METHOD/xBUDGET/PRECISION/sSEED``: resumed where a killed
run stopped, skipped once evaluated, so the script can be stopped and started again (a folder of
other settings is refused). The JSON holds, per method and budget, every seed's accuracies, their
means and the bf16 - fp32 differences, and at the top:

- ``quality_delta``: bf16 minus fp32 linear-probe test accuracy, mean over the seeds, per method,
  at the first budget (the quickstart's); ``quality_delta_by_budget`` has every budget;
- ``step_speedup``: bf16 pairs/s over fp32 pairs/s of selfnas's own training steps (the median
  metric window of each run, the first left out), the median over the (method, budget, seed)
  pairs; ``step_speedup_by_method`` per method. A timing only when the machine was quiet (the load
  averages are recorded).

On a CPU without native bf16 (no avx512_bf16 / amx_bf16), ``run.precision=bf16`` is refused;
``--emulated`` runs it anyway for the quality figures (torch computes the same bf16 rounding by
conversion), and its speed-up then says nothing of a bf16 CPU (``"emulated": true`` in the JSON).

    python benchmarks/bf16_quality.py --seeds 0 1 2 --budgets 1 4 --out benchmarks/results_bf16_cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch
from fair import load_average, machine_record, precision_record

import selfnas.api
from selfnas import device
from selfnas.build import load_run_config
from selfnas.config import TrainConfig, build_config
from selfnas.evaluation import evaluate
from selfnas.io import atomic_write_json, read_jsonl
from selfnas.rundir import RunDir

PRECISIONS = ("fp32", "bf16")
PROBES = ("knn", "linear")
SPLITS = ("val", "test")


def run_config(
    method: str, epochs: float, precision: str, seed: int, args: argparse.Namespace
) -> TrainConfig:
    """The quickstart's pretraining with ``method``, ``epochs``, ``precision`` and ``seed`` on the CPU."""
    limits = [] if args.eval_limit is None else [f"run.eval_train_limit={args.eval_limit}",
                                                 f"run.eval_test_limit={args.eval_limit}"]  # fmt: skip
    return build_config(
        Path(str(files("selfnas") / "configs" / "quickstart.yaml")),
        [
            f"method.name={method}",
            f"optim.epochs={epochs}",
            f"data.train_limit={args.train_limit}",
            f"run.precision={precision}",
            f"run.seed={seed}",
            "run.device=cpu",
            f"run.threads={args.threads}",
            "run.knn_every=0",  # the probes at the end measure; a monitor would sit in the timed windows
            "run.eval_at_end=false",  # evaluated below, also when a kill came between training and eval
            "search=null",
            *limits,
        ],
    )


def train_and_evaluate(path: Path, config: TrainConfig) -> dict[str, Any]:
    """Train ``config`` into ``path`` (resumed, or skipped when trained) and evaluate it as ``selfnas
    eval`` does (skipped when evaluated); returns eval.json plus the run's median pairs/s."""
    run = RunDir(path)
    if run.config.exists():
        saved = load_run_config(run).model_dump(mode="json")
        if saved != config.model_dump(mode="json"):
            raise SystemExit(f"{path} holds a run of other settings; remove it or pick another --runs")
    status = run.read_status() if run.path.exists() else {}
    trained = status.get("state") == "finished" and run.model.exists()
    if not trained:
        selfnas.api.train(config, out=path, resume=run.config.exists(), overwrite=not run.config.exists(),
                          quiet=True)  # fmt: skip
    if run.eval.exists():
        result = json.loads(run.eval.read_text(encoding="utf-8"))
    else:
        result = evaluate(path, follow_run=True, quiet=True)
    return {**result, "pairs_per_s": median_pairs_per_s(run)}


def median_pairs_per_s(run: RunDir) -> float:
    """The median pairs/s of the run's metric windows, the first (start-up) left out when there
    are others."""
    rates = [r["pairs_per_s"] for r in read_jsonl(run.metrics) if r.get("kind") == "step"]
    return statistics.median(rates[1:] or rates)


def collect(per_seed: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per precision: the seeds' accuracies, pairs/s and means; then bf16 - fp32 of every mean and
    the per-seed bf16 / fp32 speed-ups."""
    out: dict[str, Any] = {}
    for precision, results in per_seed.items():
        side: dict[str, Any] = {
            probe: {split: [r[probe][split] for r in results] for split in SPLITS} for probe in PROBES
        }
        side["pairs_per_s"] = [r["pairs_per_s"] for r in results]
        side["means"] = {f"{p}_{s}": statistics.fmean(side[p][s]) for p in PROBES for s in SPLITS}
        side["precision_measured"] = sorted({r.get("precision") for r in results})
        out[precision] = side
    fp32, bf16 = out["fp32"], out["bf16"]
    out["delta"] = {key: bf16["means"][key] - fp32["means"][key] for key in fp32["means"]}
    out["speedup_per_seed"] = [b / f for b, f in zip(bf16["pairs_per_s"], fp32["pairs_per_s"], strict=True)]
    return out


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    ap.add_argument("--methods", nargs="+", default=["simsiam", "simclr"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budgets", type=float, nargs="+", default=[1, 4], help="factors of --epochs")
    ap.add_argument("--epochs", type=float, default=2.0, help="the quickstart budget (its optim.epochs)")
    ap.add_argument("--train-limit", type=int, default=20000, help="training images (the quickstart's)")
    ap.add_argument(
        "--eval-limit",
        type=int,
        default=None,
        help="kNN bank / probe images and images per held-out split (default: as selfnas eval)",
    )
    ap.add_argument("--threads", type=int, default=None, help="run.threads of every run (default: the cores)")
    ap.add_argument("--emulated", action="store_true", help="allow bf16 on a CPU without native bf16")
    ap.add_argument("--runs", type=Path, default=Path("runs/bench-bf16"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results_bf16_cpu.json"))
    args = ap.parse_args()
    args.threads = args.threads or device.cpu_cores()
    bf16 = precision_record("bf16", args.emulated)  # the runs below are in this process
    load_start = load_average(warn=True)
    results: dict[str, dict[str, Any]] = {}
    for method in args.methods:
        for budget in args.budgets:
            per_seed: dict[str, list[dict[str, Any]]] = {p: [] for p in PRECISIONS}
            for seed in args.seeds:
                for precision in PRECISIONS:  # alternating, so that a burst of load hits both alike
                    path = args.runs / method / f"x{budget:g}" / precision / f"s{seed}"
                    print(f"{method} x{budget:g} {precision} seed {seed}: {path}", flush=True)
                    config = run_config(method, args.epochs * budget, precision, seed, args)
                    per_seed[precision].append(train_and_evaluate(path, config))
            results.setdefault(method, {})[f"x{budget:g}"] = collect(per_seed)
    first = f"x{args.budgets[0]:g}"
    speedups = {m: [s for b in r.values() for s in b["speedup_per_seed"]] for m, r in results.items()}
    result = {
        "benchmark": "bf16_quality",
        "command": " ".join(["python", "benchmarks/bf16_quality.py", *sys.argv[1:]]),
        "setting": {
            "config": "selfnas/configs/quickstart.yaml (pretraining), run.device=cpu, run.knn_every=0",
            "epochs": {f"x{b:g}": args.epochs * b for b in args.budgets},
            "train_limit": args.train_limit,
            "threads": args.threads,
            "evaluation": "selfnas eval RUN: kNN k=200 and the 5-fold CV linear probe on val and test, "
            "features in the run's precision",
            "eval_limit": args.eval_limit,
        },
        "cpu_bf16": bf16["cpu_bf16"],
        "emulated": bf16["emulated"],
        "quality_delta": {m: r[first]["delta"]["linear_test"] for m, r in results.items()},
        "quality_delta_by_budget": {
            m: {b: {k: v["delta"][k] for k in ("linear_test", "knn_test")} for b, v in r.items()}
            for m, r in results.items()
        },
        "step_speedup": statistics.median([s for v in speedups.values() for s in v]),
        "step_speedup_by_method": {m: statistics.median(v) for m, v in speedups.items()},
        "results": results,
        **machine_record(),
        "torch_threads": torch.get_num_threads(),
        "load_average": {"start": load_start, "end": load_average()},
    }
    atomic_write_json(args.out, result)
    print({k: result[k] for k in ("quality_delta", "step_speedup", "step_speedup_by_method", "emulated")})


if __name__ == "__main__":
    main()
