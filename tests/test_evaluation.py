import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selfnas import api, evaluation
from selfnas.config import build_config
from selfnas.errors import ConfigError, DatasetError, RunDirError
from selfnas.evaluation import evaluate
from selfnas.io import atomic_write_json, read_jsonl
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


# -- runs trained with labels: the frozen probes of their backbone ---------------------------------

#: tiny runs trained with labels, their held-out splits capped as the SSL run above
LABELED_LIMITS = ["run.eval_train_limit=200", "run.eval_test_limit=40"]


def build_labeled_runs(root):
    """``root/ssl`` (pretrained, evaluated), ``root/ft`` (a 10%-label fine-tuning of it) and ``root/sup``
    (supervised from scratch, with cutout and label smoothing): tiny, a few seconds each."""
    import selfnas

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ssl = build_config(overrides=[*TINY, "optim.epochs=1", "run.knn_every=0", *LABELED_LIMITS])
        selfnas.train(ssl, out=root / "ssl", quiet=True)
        ft = ["finetune.epochs=2", "finetune.batch_size=16"]
        selfnas.finetune(root / "ssl", labels="10%", out=root / "ft", quiet=True, overrides=ft)
        sup = ["supervised.epochs=2", "supervised.batch_size=64", "supervised.cutout=4",
               "supervised.label_smoothing=0.1", "data.train_limit=256"]  # fmt: skip
        selfnas.train_supervised(
            build_config(overrides=[*TINY, *LABELED_LIMITS, *sup]), out=root / "sup", quiet=True
        )
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    return build_labeled_runs(tmp_path_factory.mktemp("labeled"))


def _copy(labeled, name, tmp_path):
    return Path(shutil.copytree(labeled / name, tmp_path / name))


@pytest.mark.parametrize("name, section", [("sup", "supervised"), ("ft", "finetune")])
def test_eval_probes_the_backbone_of_a_run_trained_with_labels_and_keeps_its_classifier(
    labeled, tmp_path, name, section
):
    run = _copy(labeled, name, tmp_path)
    before = json.loads((run / "eval.json").read_text())
    result = evaluate(run, device="cpu")
    written = json.loads((run / "eval.json").read_text())
    assert written == json.loads(json.dumps(result))
    for probe in ("knn", "linear"):
        scores = [written[probe][split] for split in ("val", "test")]
        assert all(math.isfinite(s) and 0 <= s <= 1 for s in scores), (probe, scores)
    kept = written[section]  # the run's own classifier, with what it was measured on
    assert {k: kept[k] for k in before[section]} == before[section]
    assert kept["n_train"] == before["n_train"] and kept["n_held_out"] == before["n_held_out"]
    assert written["n_train"] == 200 and _state(run) == "finished"
    assert [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "eval"][-1]["knn"] == written["knn"]


def test_eval_of_a_supervised_run_uses_its_trained_backbone(labeled, tmp_path, monkeypatch):
    """The probed backbone holds the classifier's trained backbone weights, not a fresh initialisation."""
    run = _copy(labeled, "sup", tmp_path)
    seen = []
    real = evaluation.probe_features
    monkeypatch.setattr(evaluation, "probe_features", lambda b, *a, **k: seen.append(b) or real(b, *a, **k))
    evaluate(run, device="cpu", linear=False, write=False)
    saved = load_file(str(run / "model.safetensors"))
    probed = seen[0].state_dict()
    assert probed and all(torch.equal(t.cpu(), saved[f"backbone.{k}"]) for k, t in probed.items())


def test_eval_on_images_of_other_channels_is_a_one_line_error_that_changes_nothing(labeled, tmp_path):
    run = _copy(labeled, "sup", tmp_path)
    before = {p: (run / p).read_bytes() for p in ("eval.json", "status.json")}
    with pytest.raises(DatasetError, match="trained on 3-channel images and digits has 1") as info:
        evaluate(run, data="digits", device="cpu")
    assert "\n" not in str(info.value) and "--data" in str(info.value)
    assert {p: (run / p).read_bytes() for p in before} == before


def test_a_run_trained_with_labels_has_no_ssl_heads_to_load(labeled):
    from selfnas.build import load_pretrained

    assert load_pretrained(labeled / "ft")(torch.zeros(2, 3, 16, 16)).shape == (2, 16)
    with pytest.raises(RunDirError, match="trained with labels.*part='backbone'"):
        load_pretrained(labeled / "sup", "encoder")
