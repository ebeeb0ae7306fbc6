"""Optuna cell search (CSNAS) on Fashion-MNIST at a small budget; prints JSON.

Three comparisons, each at equal budget in the same run:

* ``strategies``: TPE vs random over several seeds. Each study ranks candidates by a
  label-free score; what counts is the validation accuracy (kNN and linear probe, measured
  per trial and never used by the search) of the trial each study picked as its best.
* ``pruning``: trials per hour with successive halving vs without pruning (random sampler,
  so both studies see the same candidates).
* ``workers``: wall time of one worker vs two worker processes sharing a journal study.

    python benchmarks/study_bench.py strategies --seeds 0 1 2 --trials 10
    python benchmarks/study_bench.py pruning --trials 12 --trial-epochs 6 --pruners halving
    python benchmarks/study_bench.py workers --trials 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from selfnas.config import build_config
from selfnas.io import read_jsonl
from selfnas.nas.optuna.optuna_search import run_search_study
from selfnas.rundir import RunDir
from selfnas.training.builder import load_config_data


def common(args: argparse.Namespace) -> list[str]:
    return [
        "data.name=fashion-mnist", f"data.train_limit={args.images}", "method.name=simclr",
        "optim.batch_size=128", "optim.warmup_epochs=0.2", "run.device=cpu", "run.checkpoint_every=100000",
        "search.space=cells", f"search.nodes={args.nodes}", f"search.cell_width={args.width}",
        f"search.cell_layers={args.layers}", f"search.trials={args.trials}",
        f"search.trial_epochs={args.trial_epochs}", f"search.score={args.score}", "search.probe_limit=2000",
        *([f"run.threads={args.threads}"] if args.threads else []),
    ]  # fmt: skip


def study(overrides: list[str], data=None) -> tuple[dict, list[dict], float]:
    cfg = build_config(overrides=overrides)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir.prepare(Path(tmp) / "s")
        t0 = time.perf_counter()
        summary = run_search_study(cfg, run, quiet=True, data=data)
        seconds = time.perf_counter() - t0
        rows = read_jsonl(run.path / "trials.jsonl")
    return summary, rows, seconds


def strategies(args: argparse.Namespace) -> dict:
    data = load_config_data(build_config(overrides=common(args)))
    out: dict = {"per_seed": []}
    for seed in args.seeds:
        entry: dict = {"seed": seed}
        for strategy in ("tpe", "random"):
            ov = [*common(args), f"search.strategy={strategy}", "search.pruner=none", f"run.seed={seed}",
                  f"search.startup_trials={args.startup}"]  # fmt: skip
            summary, rows, seconds = study(ov, data)
            best = next(r for r in rows if r["number"] == summary["best_trial"])
            entry[strategy] = {"best_trial": best["number"], "best_value": best["value"],
                               "best_knn_val": best["accuracy"].get("knn"),
                               "best_linear_val": best["accuracy"].get("linear"),
                               "seconds": round(seconds, 1),
                               "correlations": summary["correlations"]}  # fmt: skip
        out["per_seed"].append(entry)
        print(json.dumps(entry), flush=True)
    for strategy in ("tpe", "random"):
        for key in ("best_knn_val", "best_linear_val", "best_value"):
            vals = [e[strategy][key] for e in out["per_seed"]]
            out[f"{strategy}_{key}_mean"] = statistics.fmean(vals)
    return out


def pruning(args: argparse.Namespace) -> dict:
    data = load_config_data(build_config(overrides=common(args)))
    out = {}
    for pruner in ("none", *args.pruners):
        ov = [*common(args), "search.strategy=random", f"search.pruner={pruner}", f"run.seed={args.seeds[0]}"]
        summary, rows, seconds = study(ov, data)
        out[pruner] = {"seconds": round(seconds, 1), "trials_per_hour": round(3600 * len(rows) / seconds, 1),
                       "counts": summary["trials"], "best_value": summary["best_value"]}  # fmt: skip
        print(json.dumps({pruner: out[pruner]}), flush=True)
    for pruner in args.pruners:
        out[f"{pruner}_speedup"] = round(out[pruner]["trials_per_hour"] / out["none"]["trials_per_hour"], 2)
    return out


def workers(args: argparse.Namespace) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n, threads in ((1, 1), (1, 2), (2, 1)):
            ov = [*common(args), "search.strategy=random", "search.pruner=none", f"search.n_workers={n}",
                  f"run.threads={threads}", f"search.storage=journal:{tmp}/w{n}t{threads}.log"]  # fmt: skip
            torch.set_num_threads(threads)
            _, rows, seconds = study(ov)  # workers load the data themselves: time it for both
            out[f"{n}w_{threads}t"] = {"seconds": round(seconds, 1), "trials": len(rows)}
            print(json.dumps({f"{n}w_{threads}t": out[f"{n}w_{threads}t"]}), flush=True)
    out["speedup_2w_vs_1w_1thread"] = round(out["1w_1t"]["seconds"] / out["2w_1t"]["seconds"], 2)
    out["speedup_2w_vs_1w_2threads"] = round(out["1w_2t"]["seconds"] / out["2w_1t"]["seconds"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["strategies", "pruning", "workers"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--trial-epochs", type=float, default=1.0)
    ap.add_argument("--startup", type=int, default=4)
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--score", default="ssl_loss")
    ap.add_argument("--pruners", nargs="+", default=["halving", "hyperband"], help="pruning: against none")
    ap.add_argument("--threads", type=int, help="torch threads per study (default: all)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    # torch threads per trial (the workers benchmark sets its own per row)
    threads = args.threads or torch.get_num_threads()
    result = {"benchmark": f"study_{args.what}", "device": "cpu", "threads": threads,
              "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              **globals()[args.what](args)}  # fmt: skip
    result["total_seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
