"""The main job: head search -> pretrain found and hand-crafted heads -> evaluate -> compare.

Each stage is a run directory under one parent; a finished stage is skipped and an
interrupted one resumed, so the whole pipeline is resumable after a kill.

    OUT/search   DARTS head search (genotype.json)
    OUT/found    the found heads pretrained from scratch
    OUT/hand     the method's hand-crafted heads, same budget
    OUT/summary.json   both evaluations, the heads' sizes, the verdict and the search's decision
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfnas import api
from selfnas.config import TrainConfig, config_to_yaml
from selfnas.errors import RunDirError
from selfnas.evaluation import evaluate
from selfnas.io import atomic_write_json, atomic_write_text, read_jsonl
from selfnas.render.verdict import compare, record_decision_warning
from selfnas.rundir import RunDir

STAGES = ("search", "found", "hand")


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
    if out.exists() and overwrite:
        for stage in STAGES:
            if (out / stage).exists():
                RunDir.prepare(out / stage, overwrite=True)
    if out.exists() and any(out.iterdir()) and not (out / "pipeline.yaml").exists():
        raise RunDirError(f"{out} exists and is not a selfnas pipeline; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "pipeline.yaml", config_to_yaml(config))
    search_cfg = config.model_copy(
        update={"optim": config.optim.model_copy(update={"epochs": search_epochs}),
                "run": config.run.model_copy(update={"eval_at_end": False})}
    )  # fmt: skip
    stages: dict[str, TrainConfig | None] = {"search": search_cfg, "found": None, "hand": config}
    for stage in STAGES:
        state = _stage_state(out / stage)
        if state == "done":
            continue
        if state == "evaluate":
            evaluate(out / stage, device=config.run.device, quiet=quiet or None)
            continue
        resume = state == "resume"
        if stage == "search":
            api.search(None if resume else search_cfg, out=out / stage, resume=resume, quiet=quiet)
        else:
            cfg = stages[stage] or api.with_genotype(config, RunDir(out / "search").genotype)
            api.train(None if resume else cfg, out=out / stage, resume=resume, quiet=quiet)
        if stage != "search" and not (out / stage / "eval.json").exists():
            evaluate(out / stage, device=config.run.device, quiet=quiet or None)
    import json

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
