"""Per-target backbone search with SSL (issues 6, 21, 32): does a backbone searched on a target's own
unlabeled images beat the default ResNet there, and random search of the same space? Prints JSON.

For each offline scenario: ``selfnas search``'s default study (TPE, the halving pruner) over the
ResNet variants (small scale) pretrains every candidate briefly with the method (SimSiam by default)
on the scenario's images, labels dropped, and ranks them by a label-free score (the search's default
score, view retrieval) on a held-out part of those images: no label is seen. With ``--cap flops``
(the default) only backbones needing no more FLOPs per image than the default ``resnet_small`` are
trained, so a win is not a bigger network. The control is random search of the same space at equal
compute: the same cap, the same score choosing among its completed trials, no pruner, and the
trials the search's spent epochs pay for (completed and pruned epochs counted, a retried crash not:
``selfnas/groundtruth/baselines.py``): ``ceil(b)`` trials run, and the result is the score's pick
among the first ``floor(b)`` with weight ``1 - frac(b)`` and among all ``ceil(b)`` with ``frac(b)``,
so on average it trains exactly the search's epochs. The control shares the search's seed, so
TPE's random start-up trials and the control's first trials coincide (a paired comparison); it is
one random study per scenario, so a per-scenario win is one draw, not an expectation. Then
the found backbone, the random search's pick and ``resnet_small`` are each pretrained at the same
budget with several seeds, and a linear probe (weight decay by 5-fold cross-validation) on the
scenario's labeled train split is reported on its test split. Both studies are kept in
``--work/SCENARIO/{search,random}`` (trials, genotypes, weights of completed trials; a rerun
continues them and reuses the finished probes in ``--work/SCENARIO/probes.json``). Every completed
trial of both studies is probed too (labels read for the report only): the find's ``percentile``
among the random search's trials, all at the trial budget. ``finds_differ`` says whether the
targets got different architectures.

    python benchmarks/per_target.py --scenarios digits fashion-rotated fashion-fewshot --seeds 0 1 2 \
        --trials 10 --trial-epochs 2 --epochs 3 --limit 3000 --threads 1 --method simclr \
        --out benchmarks/results_per_target_cpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from selfnas.build import load_backbone, load_run_config
from selfnas.config import SearchConfig, build_config, config_to_yaml
from selfnas.data.augment import TwoViewAugment, augment_preset
from selfnas.data.scenarios import load_scenario, pretraining_splits
from selfnas.data.types import DatasetSplits
from selfnas.eval.features import extract_features
from selfnas.eval.linear import linear_probe
from selfnas.eval.zero_cost import flops_per_image, param_count
from selfnas.groundtruth.baselines import percentile, search_epochs
from selfnas.io import atomic_write_json, atomic_write_text, read_jsonl
from selfnas.models.backbones import create_backbone
from selfnas.models.genotype import genotype_from_json, load_genotype
from selfnas.nas.optuna.optuna_search import run_search_study
from selfnas.nas.scoring import DIRECTION
from selfnas.nas.spaces.macro import MACRO_SPACES
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer


def backbone_size(name: str, kwargs: dict, shape: tuple[int, ...]) -> dict[str, int]:
    """Trainable parameters and FLOPs per image of a freshly built backbone."""
    backbone = create_backbone(name, in_channels=shape[0], **kwargs)
    return {"params": param_count(backbone), "flops": flops_per_image(backbone, shape)}


def probe(backbone, normalize, scenario) -> float:
    """Linear probe of frozen features: fitted on the scenario's labeled train split, on its test."""
    f_train = extract_features(backbone, scenario.train.images, normalize)
    f_test = extract_features(backbone, scenario.test.images, normalize)
    return linear_probe(
        f_train, scenario.train.labels, f_test, scenario.test.labels, scenario.num_classes
    ).accuracy


def pretrain_and_probe(overrides: list[str], splits: DatasetSplits, scenario) -> float:
    cfg = build_config(overrides=overrides)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, RunDir.prepare(Path(tmp) / "run"), quiet=True, data=splits)
        trainer.fit()
        return probe(trainer.model.backbone, trainer.augment.normalize, scenario)


def run_study(folder: Path, overrides: list[str], splits: DatasetSplits) -> tuple[dict, list[dict], Any]:
    """Run (or continue) the study in ``folder``: its summary, trials and best genotype."""
    config = build_config(overrides=overrides)
    resume = (folder / "config.yaml").exists()
    run = RunDir.prepare(folder, resume=resume)
    try:
        if not resume:
            atomic_write_text(run.config, config_to_yaml(config))
        summary = run_search_study(config, run, quiet=True, data=splits)
    finally:
        run.release()
    return summary, read_jsonl(folder / "trials.jsonl"), load_genotype(folder / "genotype.json")


def probe_trials(
    folder: Path, trials: list[dict], splits: DatasetSplits, scenario, cache: Probes
) -> dict[int, float]:
    """The linear probe (labels for the report only) of every completed trial that kept its weights."""
    out = {}
    for t in trials:
        weights = folder / "trials" / f"{t['number']:04d}" / "model.safetensors"
        if t["state"] != "COMPLETE" or not weights.exists():
            continue
        key = f"trial.{folder.name}.{t['number']}"
        if key not in cache:
            run = RunDir(weights.parent)
            backbone = load_backbone(run, weights)
            config = load_run_config(run)
            views = augment_preset(config.method.spec, splits.train.size, splits.train.channels)
            normalize = TwoViewAugment(*views, splits.mean, splits.std).normalize
            cache.put(key, probe(backbone, normalize, scenario))
        out[t["number"]] = cache[key]
    return out


class Probes(dict):
    """Finished probe accuracies of one scenario, kept in ``path`` (a rerun reuses them)."""

    def __init__(self, path: Path) -> None:
        super().__init__(json.loads(path.read_text(encoding="utf-8")) if path.exists() else {})
        self.path = path

    def put(self, key: str, value: float) -> None:
        self[key] = value
        atomic_write_json(self.path, dict(self))


def model_overrides(space_name: str, genotype) -> list[str]:
    update = MACRO_SPACES[space_name](scale="small").model_update(genotype)
    return [
        f"model.backbone={update['backbone']}",
        f"model.backbone_kwargs={json.dumps(update['backbone_kwargs'])}",
    ]


def pick_first(trials: list[dict], k: int, score: str) -> dict:
    """The trial a random search of ``k`` trainings returns: the best by ``score`` (its direction
    applied) among its first ``k`` completed trials."""
    done = sorted((t for t in trials if t["state"] == "COMPLETE"), key=lambda t: t["number"])[: max(1, k)]
    if not done:
        raise SystemExit("per_target: the random search completed no trial")
    return max(done, key=lambda t: DIRECTION[score] * t["scores"][score])


def trial_rows(trials: list[dict], probes: dict[int, float]) -> list[dict]:
    keep = ("number", "state", "value", "genotype", "intermediate", "over_cap")
    return [
        {**{k: t.get(k) for k in keep}, "linear_test_at_trial_budget": probes.get(t["number"])}
        for t in trials
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", nargs="+", default=["digits", "fashion-rotated", "fashion-fewshot"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--space", default="resnet-variants", choices=sorted(MACRO_SPACES))
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--trial-epochs", type=float, default=1.0)
    ap.add_argument("--epochs", type=float, default=3.0, help="pretraining epochs of found and default")
    ap.add_argument("--score", default=SearchConfig().score, help="default: the search's default score")
    ap.add_argument("--method", default="simsiam")
    ap.add_argument(
        "--cap",
        choices=["flops", "params", "none"],
        default="flops",
        help="search only backbones no bigger than the default resnet_small by this measure",
    )
    ap.add_argument("--limit", type=int, default=6000, help="images per scenario split")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--work", type=Path, default=Path("benchmarks/per_target"), help="the studies, kept")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    t0 = time.perf_counter()
    threads = [f"run.threads={args.threads}"] if args.threads else []
    method = ["method.name=simclr", "method.hparams={temperature: 0.5}"] if args.method == "simclr" else [
        f"method.name={args.method}"]  # fmt: skip
    common = [*method, "optim.batch_size=128",
              "optim.warmup_epochs=0.2", "run.device=cpu", "run.knn_every=0", "run.eval_at_end=false",
              "run.checkpoint_every=100000", *threads]  # fmt: skip
    result: dict = {"benchmark": "per_target_search", "device": "cpu",
                    "args": {k: str(v) for k, v in vars(args).items()}, "scenarios": {}}  # fmt: skip
    for name in args.scenarios:
        scenario = load_scenario(name, seed=0, limit=args.limit)
        # its unlabeled and train images without labels: 90 % to pretrain on, 10 % to score on
        splits = pretraining_splits(scenario, val_fraction=0.1, seed=0)
        shape = tuple(int(v) for v in splits.train.images.shape[1:])
        default_size = backbone_size("resnet_small", {}, shape)
        cap = [] if args.cap == "none" else [f"search.max_{args.cap}={default_size[args.cap]}"]
        study = [*common, f"search.space={args.space}", f"search.trial_epochs={args.trial_epochs}",
                 f"search.score={args.score}", *cap, "run.seed=0"]  # fmt: skip
        work = args.work / name
        cache = Probes(work / "probes.json")
        t_search = time.perf_counter()
        # TPE, halving pruner, start-up trials: the search's defaults
        summary, trials, genotype = run_study(
            work / "search", [*study, "search.strategy=tpe", f"search.trials={args.trials}"], splits
        )
        search_s = time.perf_counter() - t_search
        spent = search_epochs(trials, args.trial_epochs)
        budget = max(1.0, spent / args.trial_epochs)  # full trials the search's epochs pay for
        n_random = math.ceil(budget)
        _, r_trials, _ = run_study(
            work / "random",
            [*study, "search.strategy=random", "search.pruner=none", f"search.trials={n_random}"],
            splits,
        )
        # floor(budget) trials with probability 1 - frac, ceil(budget) with frac: as many epochs as the
        # search on average; each way the score picks among the first trained trials
        lo, frac = math.floor(budget), budget - math.floor(budget)
        picks = {"lo": pick_first(r_trials, lo, args.score), "hi": pick_first(r_trials, n_random, args.score)}
        weights = {"lo": 1.0 - frac, "hi": frac}
        r_genotype = genotype_from_json(picks["lo"]["genotype"])
        update = MACRO_SPACES[args.space](scale="small").model_update(genotype)
        entry = {"found": genotype.describe(), "random_search_pick": r_genotype.describe(),
                 "random_search_picks": {k: {"trial": t["number"], "weight": weights[k],
                                             "architecture": genotype_from_json(t["genotype"]).describe()}
                                         for k, t in picks.items()},
                 "search_seconds_this_call": round(search_s, 1),
                 "search_trials": summary["trials"], "over_cap": summary.get("over_cap"),
                 "equal_compute": {"search_epochs": spent, "budget_trials": budget, "random_trials": n_random,
                                   "random_epochs": search_epochs(r_trials, args.trial_epochs)},
                 "found_size": backbone_size(update["backbone"], update["backbone_kwargs"], shape),
                 "default_size": default_size, "per_seed": []}  # fmt: skip
        arms = {"found": model_overrides(args.space, genotype), "default": [],
                "random": model_overrides(args.space, r_genotype)}  # fmt: skip
        if picks["hi"]["number"] != picks["lo"]["number"] and frac > 0:  # the last trial won: both picks
            arms["random_hi"] = model_overrides(args.space, genotype_from_json(picks["hi"]["genotype"]))
        for seed in args.seeds:
            train = [*common, f"optim.epochs={args.epochs}", f"run.seed={seed}"]
            for arm, model in arms.items():
                if f"{arm}.s{seed}" not in cache:
                    cache.put(f"{arm}.s{seed}", pretrain_and_probe([*train, *model], splits, scenario))
            entry["per_seed"].append(
                {"seed": seed, **{f"{arm}_linear_test": cache[f"{arm}.s{seed}"] for arm in arms}}
            )
            print(json.dumps({name: entry["per_seed"][-1]}), flush=True)
        for arm in arms:
            entry[f"{arm}_mean"] = statistics.fmean(s[f"{arm}_linear_test"] for s in entry["per_seed"])
        if "random_hi" in arms:  # the random search's expected accuracy at the search's epochs
            entry["random_mean"] = (1 - frac) * entry["random_mean"] + frac * entry.pop("random_hi_mean")
        entry["found_wins"] = entry["found_mean"] > entry["default_mean"]
        entry["gain_vs_random_search"] = entry["found_mean"] - entry["random_mean"]
        found_probes = probe_trials(work / "search", trials, splits, scenario, cache)
        random_probes = probe_trials(work / "random", r_trials, splits, scenario, cache)
        best = summary.get("best_trial")
        best_number = best  # the best trial's number
        if best_number in found_probes and random_probes:
            entry["find_at_trial_budget"] = {
                "linear_test": found_probes[best_number],
                "percentile_among_random_trials": percentile(
                    found_probes[best_number], list(random_probes.values())
                ),
                "random_trials_probed": len(random_probes),
            }
        entry["trials"] = {
            "search": trial_rows(trials, found_probes),
            "random": trial_rows(r_trials, random_probes),
        }
        result["scenarios"][name] = entry
    entries = result["scenarios"].values()
    result["wins"] = sum(e["found_wins"] for e in entries)
    result["found_wins_on"] = result["wins"]
    result["beats_random_search_on"] = sum(e["gain_vs_random_search"] > 0 for e in entries)
    result["gain_vs_random_search_mean"] = statistics.fmean(e["gain_vs_random_search"] for e in entries)
    result["finds_differ"] = len({e["found"] for e in entries}) > 1
    result["total_seconds_this_call"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
