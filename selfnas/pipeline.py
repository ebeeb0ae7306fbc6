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

On the CPU with ``run.threads`` pinned at 2 or more, the three trainings after the search run side
by side in spawned processes, each with its share of the threads (:func:`stage_workers`): small
networks use one core far better than two, so two one-thread trainings finish well before two
two-thread ones in a row. The share depends only on ``run.threads``, never on how many stages are
left, so a resumed pipeline trains each stage exactly as an uninterrupted one does.

:func:`compare_heads` (``selfnas quickstart --space heads``, the NASiam pipeline)::

    OUT/search   DARTS head search (genotype.json)
    OUT/found    the found heads pretrained from scratch
    OUT/hand     the method's hand-crafted heads, same budget
    OUT/summary.json   both evaluations, the heads' sizes, the verdict and the search's decision
"""

from __future__ import annotations

import io
import json
import multiprocessing
import queue
import sys
import time
from pathlib import Path
from typing import Any

from selfnas import api
from selfnas.config import TrainConfig, config_to_yaml
from selfnas.device import die_with_parent, resolve_device, resolve_precision
from selfnas.errors import RunDirError, SelfnasError
from selfnas.evaluation import evaluate
from selfnas.io import atomic_write_json, atomic_write_text, read_jsonl
from selfnas.locks import LOCK_FILE, FileLock
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
    resolve_precision(config.run.precision, resolve_device(config.run.device))  # a refusal writes nothing
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
        with FileLock(path.parent):  # stages side by side add their costs one at a time
            spent = _read_costs(path.parent)
            spent[path.name] = round(spent.get(path.name, 0.0) + time.perf_counter() - started, 1)
            atomic_write_json(path.parent / COSTS, spent)


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
    configs = {  # the two searched-space networks first: side by side, they take longest
        "found": with_model(found_update),
        "random": with_model(space.model_update(random_genotype(config, out))),
        "default": with_model(equal_width_default(feature_width(found_update))),
    }
    run_training_stages(out, configs, device, quiet)
    return write_backbone_summary(config, out)


def stage_workers(config: TrainConfig, stages: int) -> tuple[int, int | None]:
    """(processes, threads each) for ``stages`` independent trainings: side by side on the CPU when
    ``run.threads`` pins 2 or more threads, split evenly; one at a time otherwise (a GPU, or a
    thread count chosen from the free cores), at ``run.threads``."""
    threads = config.run.threads
    if threads is None or threads < 2 or stages < 2 or resolve_device(config.run.device).type != "cpu":
        return 1, threads
    workers = min(stages, threads)
    return workers, threads // workers


def run_training_stages(out: Path, configs: dict[str, TrainConfig], device: str, quiet: bool) -> None:
    """Train and evaluate each ``OUT/STAGE`` of ``configs`` (skipping finished ones, resuming
    interrupted ones): in :func:`stage_workers` processes side by side, else in this process."""
    first = next(iter(configs.values()))
    workers, threads = stage_workers(first, len(configs))
    if workers == 1:
        for stage, cfg in configs.items():
            _run_stage(out / stage, cfg, False, device, quiet)
        return
    shared = {
        stage: cfg.model_copy(update={"run": cfg.run.model_copy(update={"threads": threads})})
        for stage, cfg in configs.items()
    }
    todo = [stage for stage in shared if _stage_state(out / stage) != "done"]
    if not todo:
        return
    if not quiet:
        print(
            f"training {', '.join(todo)} side by side: {min(workers, len(todo))} processes, "
            f"{threads} thread{'s' if threads != 1 else ''} each (run.threads {first.run.threads})",
            flush=True,
        )
    _stages_in_workers(out, {stage: shared[stage] for stage in todo}, device, workers, quiet)


def _stages_in_workers(
    out: Path, configs: dict[str, TrainConfig], device: str, workers: int, quiet: bool
) -> None:
    """Spawned workers take the stages in order; the first error stops them all (one line, the
    stage named); a worker that dies without a word (killed, out of memory) is reported as such."""
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch or OpenMP state
    jobs, events = ctx.Queue(), ctx.Queue()
    count = min(workers, len(configs))
    for stage in [*configs, *[None] * count]:  # one end mark per worker
        jobs.put(stage)
    procs = [
        ctx.Process(target=_stage_worker, args=(str(out), configs, device, jobs, events), daemon=True)
        for _ in range(count)
    ]
    for proc in procs:
        proc.start()
    pending = set(configs)
    try:
        while pending:
            try:
                stage, outcome, value = events.get(timeout=0.5)
            except queue.Empty:
                if any(proc.is_alive() for proc in procs):
                    continue
                try:  # a last word may have arrived just as the worker ended
                    stage, outcome, value = events.get(timeout=0.5)
                except queue.Empty:
                    break
            if outcome == "error":
                raise SelfnasError(f"{stage}: {value}")
            pending.discard(stage)
            if not quiet:
                print(f"{stage}: trained and evaluated in {value:.0f} s", flush=True)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()
    if pending:
        codes = sorted({proc.exitcode for proc in procs if proc.exitcode})
        raise RunDirError(
            f"the stage worker stopped before {', '.join(sorted(pending))} finished (exit codes {codes}); "
            "run the same command again to continue"
        )


def _stage_worker(out: str, configs: dict[str, TrainConfig], device: str, jobs: Any, events: Any) -> None:
    """One spawned worker: stages from ``jobs`` until its end mark, each reported to ``events``."""
    die_with_parent()
    streams = sys.stdout, sys.stderr
    while (stage := jobs.get()) is not None:
        started = time.perf_counter()
        # stages side by side: whose line is whose (progress and warnings go to stderr)
        sys.stdout, sys.stderr = (_Prefixed(stream, f"{stage}: ") for stream in streams)
        try:
            _run_stage(Path(out) / stage, configs[stage], False, device, quiet=True)
        except SelfnasError as exc:
            events.put((stage, "error", str(exc)))
            sys.exit(2)
        events.put((stage, "done", time.perf_counter() - started))


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


class _Prefixed(io.TextIOBase):
    """A text stream that starts every line it passes on with ``prefix``."""

    def __init__(self, stream: Any, prefix: str) -> None:
        self.stream, self.prefix, self._line_start = stream, prefix, True

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        for piece in text.splitlines(keepends=True):
            if self._line_start:
                self.stream.write(self.prefix)
            self.stream.write(piece)
            self._line_start = piece.endswith("\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
