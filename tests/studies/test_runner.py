"""A whole study in-process on the fakes: outputs, caching, interruption, refusals, failures."""

import json

import pytest

from selfnas.errors import RunDirError, TrainingError
from selfnas.io import read_jsonl
from selfnas.studies import runner
from selfnas.studies.runner import run_scenario_study
from selfnas.training.trainer import Trainer


@pytest.fixture
def calls(monkeypatch):
    """Counts of trainer fits (with their resume flag and run) and of probes."""
    seen = {"fit": [], "probe": 0}
    fit, probe = Trainer.fit, runner.probe

    def counting_fit(self, resume=False):
        seen["fit"].append((self.run.path.name, resume))
        return fit(self, resume=resume)

    def counting_probe(*args, **kwargs):
        seen["probe"] += 1
        return probe(*args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", counting_fit)
    monkeypatch.setattr(runner, "probe", counting_probe)
    return seen


def test_tiny_study_writes_every_output(fake_config, tmp_path):
    from selfnas.report.write import write_report

    out = tmp_path / "study"
    summary = run_scenario_study(fake_config(), out, quiet=True)
    assert summary["scenarios"] == ["syn-source", "syn-coarse"] and summary["complete"]
    assert [row["arch"] for row in summary["table"]] == ["default", "a01", "a02"]
    for key in ("spearman", "kendall"):
        matrix = summary[key]
        assert len(matrix) == 2 and all(len(row) == 2 for row in matrix)
        assert all(matrix[i][i] in (1.0, None) for i in range(2))
    for row in summary["table"]:
        assert set(row["scores"]) == {"syn-source", "syn-coarse"}
        for score in row["scores"].values():
            assert 0 <= score["linear"] <= 1 and 0 <= score["knn"] <= 1 and 1 <= score["rank"] <= 3
    head = summary["headline"]
    assert head["source_best"] == summary["best"]["syn-source"]["arch"] and head["targets"] == 1
    champion = next(row for row in summary["table"] if row["arch"] == head["source_best"])
    assert head["also_best"] == (champion["scores"]["syn-coarse"]["rank"] == 1)  # on the target's test
    assert json.loads((out / "summary.json").read_text()) == summary
    assert len(read_jsonl(out / "results.jsonl")) == 6
    assert (out / "plots" / "spearman.png").stat().st_size > 0 and (out / "plots" / "ranks.png").exists()
    assert "## Ranking" in (out / "study.md").read_text()
    assert (out / "archs" / "a01" / "model.safetensors").exists()
    assert json.loads((out / "archs" / "a01" / "genotype.json").read_text())["space"] == "fake"
    html, md = write_report(out)
    assert html == out / "report.html" and md == out / "study.md"
    assert "Ranking" in html.read_text() and "data:image/png;base64" in html.read_text()


def test_finished_units_are_never_redone(fake_config, tmp_path, calls):
    out = tmp_path / "study"
    first = run_scenario_study(fake_config(), out, quiet=True)
    assert len(calls["fit"]) == 3 and calls["probe"] == 6
    assert run_scenario_study(fake_config(), out, quiet=True) == first
    assert len(calls["fit"]) == 3 and calls["probe"] == 6  # nothing redone
    (out / "probes" / "a02.syn-coarse.json").unlink()
    assert run_scenario_study(fake_config(), out, resume=True, quiet=True) == first
    assert len(calls["fit"]) == 3 and calls["probe"] == 7  # just the missing cell, weights from disk


def test_interrupted_pretraining_resumes_to_the_same_summary(fake_config, tmp_path, calls, monkeypatch):
    reference = run_scenario_study(fake_config(), tmp_path / "reference", quiet=True)
    calls["fit"].clear()
    step = Trainer.before_weight_step

    def interrupt(self, s, epoch):
        if self.run.path.name == "a01" and s == 3:  # after the checkpoint at step 3
            raise KeyboardInterrupt
        step(self, s, epoch)

    monkeypatch.setattr(Trainer, "before_weight_step", interrupt)
    out = tmp_path / "study"
    with pytest.raises(KeyboardInterrupt):
        run_scenario_study(fake_config(), out, quiet=True)
    assert (out / "probes" / "default.syn-coarse.json").exists() and not list((out / "probes").glob("a01.*"))
    assert (out / "archs" / "a01" / "checkpoints" / "last.safetensors").exists()
    from selfnas.report.write import write_report

    write_report(out)  # an unfinished study reports what it has
    assert "Unfinished" in (out / "study.md").read_text() and not (out / "summary.json").exists()
    monkeypatch.setattr(Trainer, "before_weight_step", step)
    calls["fit"].clear()
    assert run_scenario_study(fake_config(), out, quiet=True) == reference
    assert calls["fit"] == [("a01", True), ("a02", False)]  # default kept, a01 from its checkpoint


def test_per_scenario_pretraining(fake_config, tmp_path):
    summary = run_scenario_study(fake_config(archs=1, pretrain_on="scenario"), tmp_path / "s", quiet=True)
    runs = sorted(p.name for p in (tmp_path / "s" / "archs").iterdir())
    assert runs == ["a01.syn-coarse", "a01.syn-source", "default.syn-coarse", "default.syn-source"]
    assert summary["complete"] and len(summary["table"]) == 2


def test_other_plan_is_refused_unless_overwritten(fake_config, tmp_path):
    out = tmp_path / "study"
    with pytest.raises(RunDirError, match="no study to resume"):
        run_scenario_study(fake_config(), out, resume=True, quiet=True)
    assert not out.exists()
    run_scenario_study(fake_config(archs=1, scenarios=["syn-source"]), out, quiet=True)
    with pytest.raises(RunDirError, match="archs: 1 in the plan, 2 asked"):
        run_scenario_study(fake_config(archs=2, scenarios=["syn-source"]), out, quiet=True)
    summary = run_scenario_study(
        fake_config(archs=2, scenarios=["syn-source"]), out, overwrite=True, quiet=True
    )
    assert len(summary["table"]) == 3 and summary["headline"]["targets"] == 0
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"")
    with pytest.raises(RunDirError, match="not a study"):
        run_scenario_study(fake_config(), folder, overwrite=True, quiet=True)


def test_a_failed_unit_does_not_stop_the_others(fake_config, tmp_path, monkeypatch):
    pretrain = runner.pretrain

    def failing(study, plan, unit, data):
        if unit.key == "a01":
            raise TrainingError("loss became NaN/inf at step 2")
        pretrain(study, plan, unit, data)

    monkeypatch.setattr(runner, "pretrain", failing)
    out = tmp_path / "study"
    with pytest.raises(TrainingError, match=r"1 of 3 pretrainings failed \(a01: loss became NaN"):
        run_scenario_study(fake_config(), out, quiet=True)
    assert (out / "probes" / "a02.syn-coarse.json").exists() and not (out / "summary.json").exists()
    monkeypatch.setattr(runner, "pretrain", pretrain)
    assert run_scenario_study(fake_config(), out, quiet=True)["complete"]


def test_batch_larger_than_the_images_is_refused_before_writing(fake_config, tmp_path):
    from selfnas.errors import ConfigError
    from selfnas.studies.plan import build_study_config

    config = build_study_config(fake_config().model_dump(mode="json"), {}, ["optim.batch_size=4096"])
    with pytest.raises(ConfigError, match="lower optim.batch_size"):
        run_scenario_study(config, tmp_path / "study", quiet=True)
    assert not (tmp_path / "study").exists()
