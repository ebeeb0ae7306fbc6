"""The main jobs: search -> pretrain the find and its baselines -> evaluate -> compare.

Each stage is a run directory under one parent; a finished stage is skipped and an
interrupted one resumed, so a pipeline is resumable after a kill.

:func:`compare_backbones` (``selfnas quickstart``, the default: a label-free backbone search over
the cells space, as CSNAS, or the ResNet variants)::

    OUT/search   the default search (screening at initialisation, TPE, halving pruner)
    OUT/found    the found backbone pretrained from scratch
    OUT/default  the hand-crafted default at the find's feature width (selfnas.groundtruth.baselines)
    OUT/random   a seeded random architecture of the same space (OUT/random.json), same budget
    OUT/summary.json   the three evaluations, sizes, both verdicts, the cost of each stage
    OUT/costs.json     wall-clock seconds per stage (timings: the one part that differs between runs)

:func:`compare_heads` (``selfnas quickstart --space heads``, the NASiam pipeline)::

    OUT/search   DARTS head search (genotype.json)
    OUT/found    the found heads pretrained from scratch
    OUT/hand     the method's hand-crafted heads, same budget
    OUT/summary.json   both evaluations, the heads' sizes, the verdict and the search's decision
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from selfnas import api
from selfnas.config import TrainConfig, config_to_yaml
from selfnas.errors import RunDirError
from selfnas.evaluation import evaluate
from selfnas.io import atomic_write_json, atomic_write_text, read_jsonl
from selfnas.locks import LOCK_FILE
from selfnas.render.verdict import compare, record_decision_warning
from selfnas.rundir import RunDir

STAGES = ("search", "found", "hand")
BACKBONE_STAGES = ("search", "found", "default", "random")
RANDOM_GENOTYPE = "random.json"
COSTS = "costs.json"  # wall-clock seconds per stage


def _stage_state(path: Path) -> str:
    run = RunDir(path)
    if not run.path.exists():
        return "new"
    state = run.read_status().get("state")
    if state == "finished" and ((run.path / "eval.json").exists() or run.genotype.exists()):
        return "done"
    if state in ("finished", "evaluating") and run.model.exists():
        return "evaluate"  # killed during the final evaluation
    return "resume" if run.config.exists() else "new"


def compare_heads(
    config: TrainConfig,
    out: str | Path,
    search_epochs: float,
    overwrite: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the three stages and return the comparison summary."""
    out = Path(out)
    _open_pipeline(config, out, STAGES, overwrite)
    search_cfg = config.model_copy(
        update={"optim": config.optim.model_copy(update={"epochs": search_epochs}),
                "run": config.run.model_copy(update={"eval_at_end": False})}
    )  # fmt: skip
    device = config.run.device
    _run_stage(out / "search", search_cfg, True, device, quiet)
    _run_stage(
        out / "found", api.with_genotype(config, RunDir(out / "search").genotype), False, device, quiet
    )
    _run_stage(out / "hand", config, False, device, quiet)
    results = {s: json.loads((out / s / "eval.json").read_text()) for s in ("found", "hand")}
    genotype = json.loads((RunDir(out / "search").genotype).read_text())
    summary: dict[str, Any] = {
        "method": config.method.name,
        "data": config.data.name,
        "seeds": 1,
        "genotype": genotype,
        "found": {"knn": results["found"]["knn"], "linear": results["found"].get("linear", {})},
        "hand": {"knn": results["hand"]["knn"], "linear": results["hand"].get("linear", {})},
        "sizes": {s: run_sizes(out / s) for s in ("found", "hand")},
        "decision_warning": search_decision(out / "search"),
    }
    verdict = compare(summary["found"], summary["hand"], summary["sizes"])
    summary["verdict"] = None if verdict is None else verdict.sentence
    atomic_write_json(out / "summary.json", summary)
    return summary


def run_sizes(run_dir: Path) -> dict[str, int]:
    """Parameters of the run's heads and whole SSL model, FLOPs per image of backbone + projector."""
    from selfnas.build import find_run, load_run_config, load_run_dataset, weights_in_channels
    from selfnas.eval.zero_cost import param_count
    from selfnas.nas.scoring import size_scores
    from selfnas.training.builder import build_method

    run, weights = find_run(run_dir)
    config = load_run_config(run)
    model = build_method(config, weights_in_channels(config, weights))
    data = load_run_dataset(run.path, train_limit=1)  # the image size, not the images
    sizes = size_scores(model, (data.train.channels, data.train.size, data.train.size))
    heads = [m for m in (model.projector, getattr(model, "predictor", None)) if m is not None]
    return {
        "head_params": sum(param_count(m) for m in heads),
        "params": int(sizes["params"]),
        "flops": int(sizes["flops"]),
    }


def search_decision(search_dir: Path) -> str | None:
    """The warning of a head search that did not decide (its last epoch), or None."""
    epochs = [r for r in read_jsonl(RunDir(search_dir).metrics) if r.get("kind") == "epoch"]
    last = next((r for r in reversed(epochs) if isinstance(r.get("alphas"), dict)), None)
    return None if last is None else record_decision_warning(last)


def _open_pipeline(config: TrainConfig, out: Path, stages: tuple[str, ...], overwrite: bool) -> None:
    if out.exists() and overwrite:
        for stage in stages:
            if (out / stage).exists():
                RunDir.prepare(out / stage, overwrite=True)
        (out / RANDOM_GENOTYPE).unlink(missing_ok=True)
        (out / COSTS).unlink(missing_ok=True)
    entries = [p for p in out.iterdir() if p.name != LOCK_FILE] if out.exists() else []
    if entries and not (out / "pipeline.yaml").exists():
        raise RunDirError(f"{out} exists and is not a selfnas pipeline; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "pipeline.yaml", config_to_yaml(config))


def _run_stage(path: Path, config: TrainConfig | None, search: bool, device: str, quiet: bool) -> None:
    """Run, resume or finish evaluating one stage's run directory (skipped when done); the wall
    clock it took is added to the pipeline's ``costs.json``, so resumed stages sum their parts."""
    state = _stage_state(path)
    if state == "done":
        return
    started = time.perf_counter()
    try:
        _advance_stage(path, config, search, device, quiet, state)
    finally:
        costs_path = path.parent / COSTS
        spent = _read_costs(path.parent)
        spent[path.name] = round(spent.get(path.name, 0.0) + time.perf_counter() - started, 1)
        atomic_write_json(costs_path, spent)


def _read_costs(out: Path) -> dict[str, float]:
    try:
        spent = json.loads((out / COSTS).read_text())
    except (OSError, ValueError):
        return {}
    return (
        {k: float(v) for k, v in spent.items() if isinstance(v, int | float)}
        if isinstance(spent, dict)
        else {}
    )


def _advance_stage(
    path: Path, config: TrainConfig | None, search: bool, device: str, quiet: bool, state: str
) -> None:
    if state == "evaluate":
        evaluate(path, device=device, quiet=quiet or None)
        return
    resume = state == "resume"
    if search:
        api.search(None if resume else config, out=path, resume=resume, quiet=quiet)
        return
    api.train(None if resume else config, out=path, resume=resume, quiet=quiet)
    if not (path / "eval.json").exists():
        evaluate(path, device=device, quiet=quiet or None)


def random_genotype(config: TrainConfig, out: Path) -> Any:
    """The pipeline's random architecture of the searched space: drawn once from ``run.seed``
    (its own stream), kept in ``OUT/random.json`` so a resumed pipeline trains the same one."""
    import optuna

    from selfnas.models.genotype import genotype_from_json, load_genotype, save_genotype
    from selfnas.nas.spaces.optuna_spaces import study_space
    from selfnas.training.trainer import stream_seed

    path = out / RANDOM_GENOTYPE
    if path.exists():
        return load_genotype(path)
    assert config.search is not None
    sampler = optuna.samplers.RandomSampler(seed=stream_seed(config.run.seed, 13, 0) % 2**32)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    genotype = study_space(config.search).suggest(optuna.create_study(sampler=sampler).ask())
    save_genotype(path, genotype)
    return genotype_from_json(genotype.to_json())


def compare_backbones(
    config: TrainConfig, out: str | Path, overwrite: bool = False, quiet: bool = False
) -> dict[str, Any]:
    """Run (or resume) the label-free backbone search and its three-way comparison; the summary."""
    from selfnas.groundtruth.baselines import equal_width_default, feature_width
    from selfnas.models.genotype import load_genotype
    from selfnas.nas.spaces.optuna_spaces import study_space

    out = Path(out)
    search = config.search
    if search is None or search.space == "heads":
        raise RunDirError("compare_backbones needs a backbone search space (cells, resnet-variants)")
    _open_pipeline(config, out, BACKBONE_STAGES, overwrite)
    device = config.run.device
    space = study_space(search)
    trained = config.model_copy(update={"search": None})

    def with_model(update: dict[str, Any]) -> TrainConfig:
        return trained.model_copy(update={"model": trained.model.model_copy(update=update)})

    _run_stage(out / "search", config.model_copy(update={"run": config.run.model_copy(
        update={"eval_at_end": False})}), True, device, quiet)  # fmt: skip
    found_update = space.model_update(load_genotype(RunDir(out / "search").genotype))
    configs = {
        "found": with_model(found_update),
        "default": with_model(equal_width_default(feature_width(found_update))),
        "random": with_model(space.model_update(random_genotype(config, out))),
    }
    for stage, cfg in configs.items():
        _run_stage(out / stage, cfg, False, device, quiet)
    return write_backbone_summary(config, out)


def write_backbone_summary(config: TrainConfig, out: Path) -> dict[str, Any]:
    """``summary.json`` of a finished backbone pipeline: the three sides and both verdicts."""
    from selfnas.groundtruth.baselines import EQUAL_WIDTH_RULE
    from selfnas.models.genotype import load_genotype

    assert config.search is not None
    sides: dict[str, Any] = {}
    for stage in ("found", "default", "random"):
        result = json.loads((out / stage / "eval.json").read_text())
        sides[stage] = {"knn": result["knn"], "linear": result.get("linear", {}),
                        "feature_dim": result.get("feature_dim"), **run_sizes(out / stage)}  # fmt: skip
    study = json.loads((out / "search" / "study.json").read_text())
    verdicts = {}
    for other, label in (("default", "hand-crafted"), ("random", "random")):
        sizes = {"found": sides["found"], "hand": sides[other]}
        v = compare(sides["found"], sides[other], sizes, what="backbone", other=label)
        verdicts[other] = None if v is None else v.sentence
    summary: dict[str, Any] = {
        "method": config.method.name,
        "data": config.data.name,
        "space": config.search.space,
        "seeds": 1,
        "genotype": load_genotype(RunDir(out / "search").genotype).to_json(),
        "random_genotype": load_genotype(out / RANDOM_GENOTYPE).to_json(),
        **sides,
        "verdict": verdicts,
        "search": {
            "score": study.get("score"),
            "trials": study.get("trials"),
            "screen": study.get("screen"),
            "best_trial": study.get("best_trial"),
        },  # fmt: skip
        "default_rule": EQUAL_WIDTH_RULE,
        "costs": _read_costs(out),
    }
    atomic_write_json(out / "summary.json", summary)
    return summary
