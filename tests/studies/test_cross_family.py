"""ResNet and MobileNetV2 variants in one study: one ranking, one correlation matrix over every
architecture, each row with its family; a user's folder probed as a scenario; old plans resume."""

from __future__ import annotations

import json

import pytest
from scipy import stats

from selfnas.errors import SelfnasError
from selfnas.studies.outputs import ranking_rows
from selfnas.studies.plan import build_study_config, read_plan, sample_plan
from selfnas.studies.runner import run_scenario_study
from tests.data.test_scenarios import write_png_classes
from tests.studies.conftest import FAKE_SCENARIOS, STUDY_TRAIN, fake_load_scenario

FAMILIES = "resnet-variants,mobilenet-variants"
#: CPU-sized choices: 4 ResNets (basic / bottleneck x 2 widths) and 2 MobileNetV2s
TINY_SPACES = (
    "study.space_kwargs={resnet-variants: {blocks: [1], bottleneck_blocks: [1], widths: [2, 4], groups: [1]},"
    " mobilenet-variants: {repeats: [1], width_mults: [1.0, 1.5]}}"
)
IDS = ["default", "resnet01", "resnet02", "mobilenet01", "mobilenet02"]


@pytest.fixture
def real_spaces(monkeypatch, single_thread):
    """The real macro spaces on the fake (synthetic, 3 x 16 x 16) scenarios; no training-curve
    plot per pretraining (a second each, and not what these tests look at)."""
    from selfnas.studies import plan, runner
    from selfnas.training import trainer

    monkeypatch.setattr(plan, "scenario_names", lambda offline_only=False: list(FAKE_SCENARIOS))
    monkeypatch.setattr(runner, "load_scenario", fake_load_scenario)
    monkeypatch.setattr(trainer, "plot_training_curves", lambda run: None)

    def make(options: dict | None = None, sets: tuple[str, ...] = (TINY_SPACES,)):
        options = {"space": FAMILIES, "archs": 2, "scenarios": ["syn-source", "syn-coarse"], "limit": 128} | (
            options or {}
        )
        return build_study_config(None, options, [*STUDY_TRAIN, "optim.epochs=1", *sets])

    return make


def _rho(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rho, None where it is undefined (a constant side), as the study reports it."""
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return float(stats.spearmanr(xs, ys).statistic)


def test_each_family_is_sampled_as_in_a_study_of_it_alone(real_spaces):
    config = real_spaces()
    plan = sample_plan(config, 3, 16)
    assert [a.id for a in plan.archs] == IDS
    assert [a.family for a in plan.archs] == [None, *["resnet-variants"] * 2, *["mobilenet-variants"] * 2]
    assert {a.model["backbone"] for a in plan.archs[1:3]} == {"resnet_variant"}
    assert {a.model["backbone"] for a in plan.archs[3:]} == {"mobilenet_variant"}
    for family, archs in (("resnet-variants", plan.archs[1:3]), ("mobilenet-variants", plan.archs[3:])):
        kwargs = config.space_kwargs[family]
        alone = build_study_config(None, {"space": family, "archs": 2, "scenarios": ["syn-source"]},
                                   [*STUDY_TRAIN, f"study.space_kwargs={json.dumps(kwargs)}"])  # fmt: skip
        single = sample_plan(alone, 3, 16).archs[1:]
        assert [a.id for a in single] == ["a01", "a02"]  # one family keeps its old ids
        assert [a.genotype for a in single] == [a.genotype for a in archs]
    assert type(plan).from_json(plan.to_json()) == plan  # families round-trip through plan.json


def test_one_study_ranks_both_families_and_a_user_folder_together(real_spaces, tmp_path):
    folder = write_png_classes(tmp_path / "pngs", per_class=10)
    config = real_spaces({"user_scenarios": {"pngs": f"imagefolder:{folder}@16"}})
    assert config.scenarios == ["syn-source", "syn-coarse", "pngs"]
    out = tmp_path / "study"
    summary = run_scenario_study(config, out, quiet=True)
    assert summary["complete"] and summary["spaces"] == ["resnet-variants", "mobilenet-variants"]
    assert [(r["arch"], r["family"]) for r in summary["table"]] == [
        (a.id, a.family) for a in read_plan(out).archs
    ]
    accuracy = {s: [r["scores"][s]["linear"] for r in summary["table"]] for s in summary["scenarios"]}
    for s, scores in accuracy.items():  # one population: every rank counts all five architectures
        ranks = [r["scores"][s]["rank"] for r in summary["table"]]
        assert ranks == [1 + sum(o > x for o in scores) for x in scores]
    assert len(summary["spearman"]) == 3 and all(len(row) == 3 for row in summary["spearman"])
    for i, a in enumerate(summary["scenarios"]):  # over all five rows, both families together
        for j, b in enumerate(summary["scenarios"]):
            assert summary["spearman"][i][j] == pytest.approx(_rho(accuracy[a], accuracy[b])), (a, b)
    assert summary["spearman"][0][1] is not None  # the source-target correlation is defined here
    best = summary["best"]["syn-source"]["arch"]
    family = next(r["family"] for r in summary["table"] if r["arch"] == best)
    header, rows = ranking_rows(summary)
    assert header[:3] == ["arch", "family", "architecture"]
    assert [row[1] for row in rows] == ["reference", *["resnet-variants"] * 2, *["mobilenet-variants"] * 2]
    cell = json.loads((out / "probes" / "mobilenet02.pngs.json").read_text())
    assert cell["n_test"] == 6 and 0.0 <= cell["linear"] <= 1.0  # the folder's 20% test, 2 per class
    text = (out / "study.md").read_text()
    assert f"- syn-source: {best}{f' from {family}' if family else ''} (" in text
    assert (
        "resnet-variants + mobilenet-variants" in text and "2 resnet-variants, 2 mobilenet-variants" in text
    )
    assert (out / "plots" / "spearman.png").exists() and (out / "plots" / "ranks.png").exists()


def test_a_plan_written_before_families_and_folders_resumes_unchanged(fake_config, tmp_path):
    out = tmp_path / "study"
    first = run_scenario_study(fake_config(), out, quiet=True)
    assert [r["family"] for r in first["table"]] == [None, "fake-variants", "fake-variants"]
    plan = json.loads((out / "plan.json").read_text())
    for arch in plan["archs"]:
        del arch["family"]  # as the study wrote it before it knew families ...
    del plan["config"]["user_scenarios"]  # ... or folders
    (out / "plan.json").write_text(json.dumps(plan))
    (out / "probes" / "a02.syn-coarse.json").unlink()
    assert run_scenario_study(fake_config(), out, resume=True, quiet=True) == first


@pytest.mark.parametrize(
    ("options", "sets", "fragment"),
    [
        ({"space": "resnet-variants,vgg-variants"}, (), "unknown space 'vgg-variants'"),
        ({}, ("study.space_kwargs={widths: [2]}",), "key the choices by space"),
        ({}, ("study.space_kwargs={resnet-variants: {depth: [1]}}",), "resnet-variants: "),
        ({"space": " , "}, (), "name at least one macro space"),
        ({"user_scenarios": {"digits": "imagefolder:/tmp"}}, (), "taken by a registered scenario"),
        ({"user_scenarios": {"pngs": "imagefolder:/no/such/folder"}}, (), "does not exist"),
    ],
)
def test_bad_families_are_refused_before_anything_is_written(real_spaces, tmp_path, options, sets, fragment):
    with pytest.raises(SelfnasError, match=fragment):
        run_scenario_study(real_spaces(options, sets), tmp_path / "study", quiet=True)
    assert not (tmp_path / "study").exists()
