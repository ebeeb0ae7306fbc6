"""Per-target backbone search with SSL (issues 6, 21): does a backbone searched on a target's own
unlabeled images beat the default ResNet there? Prints JSON.

For each offline scenario: ``selfnas search``'s default study (TPE, the halving pruner) over the
ResNet variants (small scale) pretrains every candidate briefly with the method (SimSiam by default)
on the scenario's images, labels dropped, and ranks them by a label-free score (the search's default
score, view retrieval) on a held-out part of those images: no label is seen. With ``--cap flops``
(the default) only backbones needing no more FLOPs per image than the default ``resnet_small`` are
trained, so a win is not a bigger network. Then the found backbone and ``resnet_small`` are each
pretrained at the same budget with several seeds, and a linear probe (weight decay by 5-fold cross-
validation) on the scenario's labeled train split is reported on its test split; params and FLOPs of
both are in the JSON, and ``wins`` counts the scenarios where the found mean is higher.

    python benchmarks/per_target.py --scenarios digits fashion-rotated fashion-fewshot --seeds 0 1 2 \
        --trials 10 --trial-epochs 2 --epochs 3 --limit 3000 --threads 1 --method simclr
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from selfnas.config import SearchConfig, build_config
from selfnas.data.scenarios import load_scenario, pretraining_splits
from selfnas.data.types import DatasetSplits
from selfnas.eval.features import extract_features
from selfnas.eval.linear import linear_probe
from selfnas.eval.zero_cost import flops_per_image, param_count
from selfnas.models.backbones import create_backbone
from selfnas.models.genotype import load_genotype
from selfnas.nas.optuna.optuna_search import run_search_study
from selfnas.nas.spaces.macro import MACRO_SPACES
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer


def backbone_size(name: str, kwargs: dict, shape: tuple[int, ...]) -> dict[str, int]:
    """Trainable parameters and FLOPs per image of a freshly built backbone."""
    backbone = create_backbone(name, in_channels=shape[0], **kwargs)
    return {"params": param_count(backbone), "flops": flops_per_image(backbone, shape)}


def pretrain_and_probe(overrides: list[str], splits: DatasetSplits, scenario) -> float:
    cfg = build_config(overrides=overrides)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, RunDir.prepare(Path(tmp) / "run"), quiet=True, data=splits)
        trainer.fit()
        norm, backbone = trainer.augment.normalize, trainer.model.backbone
        f_train = extract_features(backbone, scenario.train.images, norm)
        f_test = extract_features(backbone, scenario.test.images, norm)
    probe = linear_probe(f_train, scenario.train.labels, f_test, scenario.test.labels, scenario.num_classes)
    return probe.accuracy


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
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    t0 = time.perf_counter()
    threads = [f"run.threads={args.threads}"] if args.threads else []
    method = ["method.name=simclr", "method.hparams={temperature: 0.5}"] if args.method == "simclr" else [
        f"method.name={args.method}"]  # fmt: skip
    common = [*method, "optim.batch_size=128",
              "optim.warmup_epochs=0.2", "run.device=cpu", "run.knn_every=0", "run.eval_at_end=false",
              "run.checkpoint_every=100000", *threads]  # fmt: skip
    result: dict = {"benchmark": "per_target_search", "device": "cpu", "args": vars(args) | {"out": None},
                    "scenarios": {}}  # fmt: skip
    for name in args.scenarios:
        scenario = load_scenario(name, seed=0, limit=args.limit)
        # its unlabeled and train images without labels: 90 % to pretrain on, 10 % to score on
        splits = pretraining_splits(scenario, val_fraction=0.1, seed=0)
        shape = tuple(int(v) for v in splits.train.images.shape[1:])
        default_size = backbone_size("resnet_small", {}, shape)
        cap = [] if args.cap == "none" else [f"search.max_{args.cap}={default_size[args.cap]}"]
        study = [*common, f"search.space={args.space}", "search.strategy=tpe", f"search.trials={args.trials}",
                 f"search.trial_epochs={args.trial_epochs}", f"search.score={args.score}", *cap,
                 "run.seed=0"]  # fmt: skip  # TPE, halving pruner, start-up trials: the search's defaults
        with tempfile.TemporaryDirectory() as tmp:
            run = RunDir.prepare(Path(tmp) / "search")
            t_search = time.perf_counter()
            summary = run_search_study(build_config(overrides=study), run, quiet=True, data=splits)
            search_s = time.perf_counter() - t_search
            genotype = load_genotype(run.path / "genotype.json")
        space = MACRO_SPACES[args.space](scale="small")
        update = space.model_update(genotype)
        found_model = [f"model.backbone={update['backbone']}",
                       f"model.backbone_kwargs={json.dumps(update['backbone_kwargs'])}"]  # fmt: skip
        entry = {"found": genotype.describe(), "search_seconds": round(search_s, 1),
                 "search_trials": summary["trials"], "over_cap": summary.get("over_cap"),
                 "found_size": backbone_size(update["backbone"], update["backbone_kwargs"], shape),
                 "default_size": default_size, "per_seed": []}  # fmt: skip
        for seed in args.seeds:
            train = [*common, f"optim.epochs={args.epochs}", f"run.seed={seed}"]
            found = pretrain_and_probe([*train, *found_model], splits, scenario)
            default = pretrain_and_probe(train, splits, scenario)
            entry["per_seed"].append(
                {"seed": seed, "found_linear_test": found, "default_linear_test": default}
            )
            print(json.dumps({name: entry["per_seed"][-1]}), flush=True)
        entry["found_mean"] = statistics.fmean(s["found_linear_test"] for s in entry["per_seed"])
        entry["default_mean"] = statistics.fmean(s["default_linear_test"] for s in entry["per_seed"])
        entry["found_wins"] = entry["found_mean"] > entry["default_mean"]
        result["scenarios"][name] = entry
    result["wins"] = sum(e["found_wins"] for e in result["scenarios"].values())
    result["found_wins_on"] = result["wins"]
    result["total_seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
