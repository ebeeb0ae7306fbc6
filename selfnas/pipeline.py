"""The main job: head search -> pretrain found and hand-crafted heads -> evaluate -> compare.

Each stage is a run directory under one parent; a finished stage is skipped and an
interrupted one resumed, so the whole pipeline is resumable after a kill.

    OUT/search   DARTS head search (genotype.json)
    OUT/found    the found heads pretrained from scratch
    OUT/hand     the method's hand-crafted heads, same budget
    OUT/summary.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfnas import api
from selfnas.config import TrainConfig, config_to_yaml
from selfnas.errors import RunDirError
from selfnas.evaluation import evaluate
from selfnas.io import atomic_write_json, atomic_write_text
from selfnas.rundir import RunDir

STAGES = ("search", "found", "hand")


def _stage_state(path: Path) -> str:
    run = RunDir(path)
    if not run.path.exists():
        return "new"
    state = run.read_status().get("state")
    if state == "finished" and ((run.path / "eval.json").exists() or run.genotype.exists()):
        return "done"
    if state == "finished" and run.model.exists():
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
            evaluate(out / stage, device=config.run.device)
            continue
        resume = state == "resume"
        if stage == "search":
            api.search(None if resume else search_cfg, out=out / stage, resume=resume, quiet=quiet)
        else:
            cfg = stages[stage] or api.with_genotype(config, RunDir(out / "search").genotype)
            api.train(None if resume else cfg, out=out / stage, resume=resume, quiet=quiet)
        if stage != "search" and not (out / stage / "eval.json").exists():
            evaluate(out / stage, device=config.run.device)
    import json

    results = {s: json.loads((out / s / "eval.json").read_text()) for s in ("found", "hand")}
    genotype = json.loads((RunDir(out / "search").genotype).read_text())
    summary = {
        "method": config.method.name,
        "data": config.data.name,
        "genotype": genotype,
        "found": {"knn": results["found"]["knn"], "linear": results["found"].get("linear", {})},
        "hand": {"knn": results["hand"]["knn"], "linear": results["hand"].get("linear", {})},
    }
    atomic_write_json(out / "summary.json", summary)
    return summary
