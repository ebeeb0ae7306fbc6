import json

import pytest

from selfnas import api, evaluation
from selfnas.config import build_config
from selfnas.errors import ConfigError, DatasetError
from selfnas.evaluation import evaluate
from selfnas.io import atomic_write_json
from selfnas.pipeline import _stage_state
from selfnas.rundir import RunDir
from selfnas.training.progress import TrainProgress
from selfnas.training.trainer import Trainer
from tests.conftest import TINY
from tests.eval.test_probe_progress import PHASES


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("evaluate") / "run"
    limits = ["run.eval_train_limit=100", "run.eval_test_limit=40"]
    cfg = build_config(overrides=[*TINY, "optim.epochs=1", "run.knn_every=0", *limits])
    Trainer(cfg, RunDir.prepare(path), quiet=True).fit()
    return path


def test_full_evaluation_uses_every_image_when_asked(run):
    full = evaluate(run, device="cpu", linear=False, write=False, train_limit=10**9, test_limit=10**9)
    assert full["n_train"] > 100 and all(n > 40 for n in full["n_held_out"].values())


def test_the_run_config_limits_apply_by_default(run):
    result = evaluate(run, device="cpu", linear=False, write=False)
    assert result["n_train"] == 100 and set(result["n_held_out"].values()) == {40}
    assert result["limits"] == {"train": 100, "test": 40}


def test_explicit_limits_override_the_config_and_are_seeded(run):
    a = evaluate(run, device="cpu", write=False, train_limit=60, test_limit=30)
    b = evaluate(run, device="cpu", write=False, train_limit=60, test_limit=30)
    assert a["n_train"] == 60 and set(a["n_held_out"].values()) == {30}
    assert a["knn"] == b["knn"] and a["linear"]["test"] == b["linear"]["test"]


def test_a_zero_limit_is_refused_with_its_name(run):
    with pytest.raises(ConfigError, match="test_limit must be a positive"):
        evaluate(run, device="cpu", linear=False, write=False, test_limit=0)


def test_eval_json_records_the_k_the_knn_used(run):
    """k = 200 with a 100-image bank (run.eval_train_limit) votes with all 100: eval.json says so."""
    small = evaluate(run, device="cpu", linear=False)
    assert small["knn_k"] == 100 and json.loads((run / "eval.json").read_text())["knn_k"] == 100
    full = evaluate(run, device="cpu", linear=False, write=False, train_limit=10**9)
    assert full["n_train"] > 200 and full["knn_k"] == 200


def _state(path) -> str:
    return RunDir(path).read_status()["state"]


def _spy_on_the_probe(monkeypatch, path, raises: BaseException | None = None) -> list[str]:
    """Make the evaluation's probe note the run's state when it runs (and raise ``raises``)."""
    seen: list[str] = []
    real = evaluation.probe_features

    def probe(*args, **kwargs):
        seen.append(_state(path))
        if raises is not None:
            raise raises
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "probe_features", probe)
    return seen


def test_status_reads_evaluating_during_the_evaluation_and_finished_after(run, monkeypatch):
    assert _state(run) == "finished"
    seen = _spy_on_the_probe(monkeypatch, run)
    evaluate(run, device="cpu", linear=False)
    assert seen == ["evaluating"] and _state(run) == "finished"
    evaluate(run, device="cpu", linear=False, write=False)  # writes nothing, so says nothing
    assert seen == ["evaluating", "finished"] and _state(run) == "finished"


def test_a_failed_evaluation_leaves_the_status_as_it_was(run, monkeypatch):
    status = RunDir(run).read_status()
    atomic_write_json(RunDir(run).status, {**status, "updated": "2000-01-01T00:00:00Z"})  # any rewrite shows
    before = RunDir(run).status.read_bytes()
    seen = _spy_on_the_probe(monkeypatch, run, raises=DatasetError("no labels"))
    with pytest.raises(DatasetError):
        evaluate(run, device="cpu", linear=False)
    assert seen == ["evaluating"] and RunDir(run).status.read_bytes() == before


def test_a_killed_evaluation_is_owed_and_the_pipeline_finishes_it(run, monkeypatch):
    _spy_on_the_probe(monkeypatch, run, raises=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        evaluate(run, device="cpu", linear=False)
    assert _state(run) == "evaluating"
    assert _stage_state(run) == "evaluate"  # the pipeline evaluates it again, it does not skip it
    monkeypatch.undo()
    evaluate(run, device="cpu", linear=False)
    assert _state(run) == "finished" and _stage_state(run) == "done"


def test_the_evaluation_reports_every_phase(run, monkeypatch):
    made: list[PhaseLog] = []
    monkeypatch.setattr(
        evaluation, "TrainProgress", lambda *a, **k: made.append(PhaseLog(*a, **k)) or made[-1]
    )
    evaluate(run, device="cpu", write=False, quiet=True)
    (progress,) = made
    phases = list(dict.fromkeys(p for p, _, _ in progress.phases))
    assert phases == PHASES
    for phase in phases:
        done, total = next((d, t) for p, d, t in reversed(progress.phases) if p == phase)
        assert done == total > 0, phase
    assert progress.closed


class PhaseLog(TrainProgress):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.phases: list[tuple[str, int, int]] = []
        self.closed = False

    def __call__(self, phase, done, total) -> None:
        self.phases.append((phase, done, total))

    def close(self) -> None:
        self.closed = True
        super().close()


def test_a_train_resumed_after_a_kill_in_its_evaluation_finishes_it(tmp_path, monkeypatch):
    """Killed while evaluating: ``selfnas train --resume`` trains nothing more and evaluates."""
    out = tmp_path / "run"
    cfg = build_config(overrides=[*TINY, "optim.epochs=1", "run.knn_every=0", "run.eval_train_limit=100",
                                  "run.eval_test_limit=40"])  # fmt: skip
    _spy_on_the_probe(monkeypatch, out, raises=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        api.train(cfg, out=out, quiet=True)
    assert _state(out) == "evaluating" and not (out / "eval.json").exists()
    monkeypatch.undo()
    result = api.train(out=out, resume=True, quiet=True)
    assert _state(out) == "finished" and (out / "eval.json").exists() and result["n_train"] == 100
