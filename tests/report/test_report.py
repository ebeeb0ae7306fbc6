"""Reports render for every kind of run directory: self-contained, images embedded, text escaped."""

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from selfnas.config import build_config
from selfnas.errors import RunDirError
from selfnas.evaluation import evaluate
from selfnas.io import atomic_write_json, read_jsonl
from selfnas.nas.strategies.darts import HeadSearchTrainer
from selfnas.report.write import write_report
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer
from tests.conftest import TINY

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"
SEARCH = ["search.projector_layers=2", "search.predictor_layers=1", "run.knn_every=0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A finished, evaluated training run and a finished head search, both tiny."""
    root = tmp_path_factory.mktemp("runs")
    Trainer(build_config(overrides=TINY), RunDir.prepare(root / "train"), quiet=True).fit()
    evaluate(root / "train", device="cpu")
    HeadSearchTrainer(
        build_config(overrides=[*TINY, *SEARCH]), RunDir.prepare(root / "search"), quiet=True
    ).fit()
    return root


def copy(runs: Path, name: str, dest: Path) -> Path:
    return Path(shutil.copytree(runs / name, dest))


def report(path: Path) -> tuple[str, str]:
    html_path, md_path = write_report(path)
    assert (html_path, md_path) == (path / "report.html", path / "report.md")
    html, md = html_path.read_text(), md_path.read_text()
    assert_self_contained(html)
    return html, md


class Tags(HTMLParser):
    """The tags of a document and their attributes, as a browser's parser sees them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def assert_self_contained(html: str) -> None:
    tags = Tags(html).tags
    refs = [a[k] or "" for _, a in tags for k in ("src", "href") if k in a]
    assert refs and all(r.startswith(("data:", "#")) for r in refs), [r[:40] for r in refs]
    assert not [t for t, _ in tags if t in ("script", "iframe", "object", "embed", "link", "base")]
    assert not [k for _, a in tags for k in a if k.startswith("on")]  # no event handlers
    assert "http://" not in html and "https://" not in html and "url(" not in html
    assert "Content-Security-Policy" in html


def images(html: str) -> int:
    return html.count('src="data:image/png;base64,')


def test_training_run(runs, tmp_path):
    run = copy(runs, "train", tmp_path / "train")
    shutil.rmtree(run / "plots")  # drawn again from metrics.jsonl
    html, md = report(run)
    result = json.loads((run / "eval.json").read_text())
    test_knn = f"{100 * result['knn']['test']:.2f}%"
    assert "finished" in html and "step 14 of 14 (100%)" in html
    assert test_knn in html and test_knn in md and "linear probe" in html
    assert images(html) == 1 and (run / "plots" / "curves.png").exists()
    assert "<pre>data:\n  name: synthetic" in html and "torchvision" in html
    assert "Head search" not in html
    assert md.startswith("# selfnas report: train\n") and "**State:** finished, step 14 of 14 (100%)" in md


def test_head_search(runs, tmp_path):
    run = copy(runs, "search", tmp_path / "search")
    for png in (run / "plots").glob("alphas_*.png"):
        png.unlink()
    html, md = report(run)
    genotype = json.loads((run / "genotype.json").read_text())
    ops = [layer["op"] for layer in genotype["projector"]["layers"]]
    assert "Found architecture (genotype.json)" in html and "backbone and found heads (selfnas draw)" in html
    assert (run / "plots" / "architecture.png").exists()
    assert all(op in html for op in ops)
    assert " → ".join(f"{op}(16)" for op in ops) in md
    assert images(html) == 4  # curves, the architecture drawing, projector and predictor heatmaps
    epochs = [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "epoch"]
    assert "alpha entropy" in html and f"{epochs[-1]['alpha_entropy']:.4g}" in html
    assert "param-free projector" in html and "Results" not in html


@pytest.mark.parametrize(
    ("state", "message", "expected"),
    [
        ("interrupted", "interrupted; continue with --resume", "step 6 of 14 (43%): interrupted; continue"),
        ("failed", "loss became NaN/inf at step 7", "step 6 of 14 (43%): loss became NaN/inf at step 7"),
        ("running", None, "step 6 of 14 (43%): killed while running (no process holds the run); continue"),
    ],
    ids=["interrupted", "failed", "running"],
)
def test_runs_that_stopped_early_say_how_far_they_got(runs, tmp_path, state, message, expected):
    """A run recorded as running that no live process holds was killed: it reads interrupted."""
    run = copy(runs, "train", tmp_path / "stopped")
    kept = [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] != "eval" and r["step"] <= 6]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    for name in ("eval.json", "model.safetensors"):
        (run / name).unlink()
    shutil.rmtree(run / "plots")
    status = {"state": state, "step": 6, "total_steps": 14, "updated": "2026-01-01T00:00:00Z"}
    atomic_write_json(run / "status.json", status | ({"message": message} if message else {}))
    html, md = report(run)
    shown = "interrupted" if state == "running" else state
    assert f'class="badge {shown}">{shown}<' in html and expected in html and expected in md
    assert 'style="width:42.9%"' in html  # the progress bar
    assert images(html) == 1 and "Results" not in html


def test_bare_run_without_metrics(runs, tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    shutil.copy(runs / "train" / "config.yaml", run)
    atomic_write_json(run / "status.json", {"state": "running", "step": 0, "total_steps": 14})
    html, md = report(run)
    assert "step 0 of 14 (0%)" in html and "<pre>" in html and images(html) == 0
    assert "**State:** interrupted, step 0 of 14 (0%): killed while running" in md


def test_directory_of_runs_compares_them(runs, tmp_path):
    root = tmp_path / "study"
    copy(runs, "search", root / "search")
    found = copy(runs, "train", root / "found")
    copy(runs, "train", root / "hand")
    result = json.loads((found / "eval.json").read_text())
    result["knn"]["test"] = 0.5
    atomic_write_json(found / "eval.json", result)
    html, md = report(root)
    assert "3 runs: 3 finished" in html and "Runs compared" in html and "Runs compared" in md
    table = html[html.index("Runs compared") :]
    assert table.index(">found<") < table.index(">hand<") < table.index(">search<")
    assert "50.00%" in table and "method default" in table
    assert all(f'class="subrun"><h2>{name}</h2>' in html for name in ("found", "hand", "search"))
    drawings = sum((root / name / "genotype.json").exists() for name in ("found", "hand", "search"))
    assert images(html) == 5 + drawings
    assert "## hand" in md and "### Found heads" in md


def test_interrupted_search_shows_the_current_argmax(runs, tmp_path):
    run = copy(runs, "search", tmp_path / "search")
    (run / "genotype.json").unlink()
    records = read_jsonl(run / "metrics.jsonl")
    records[-1]["genotype"]["projector"][0] = HOSTILE
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    atomic_write_json(run / "status.json", {"state": "interrupted", "step": 5, "total_steps": 6})
    html, md = report(run)
    assert "no genotype.json: the search has not finished" in html
    assert HOSTILE not in html and ESCAPED in html and HOSTILE not in md


def test_hostile_strings_are_escaped(runs, tmp_path):
    run = copy(runs, "train", tmp_path / HOSTILE.replace("/", "|"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["name"] = HOSTILE
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    atomic_write_json(
        run / "status.json",
        {"state": "failed", "step": 3, "total_steps": 14, "message": HOSTILE, "warnings": [HOSTILE]},
    )
    provenance = json.loads((run / "provenance.json").read_text())
    provenance["command"] = ["selfnas", "train", "--set", HOSTILE]
    atomic_write_json(run / "provenance.json", provenance)
    result = json.loads((run / "eval.json").read_text())
    result["data"], result["knn"][HOSTILE] = HOSTILE, HOSTILE
    atomic_write_json(run / "eval.json", result)
    html, md = report(run)
    assert HOSTILE not in html and HOSTILE.replace("/", "|") not in html
    assert html.count(ESCAPED) >= 6  # message, warning, config, command, eval data, eval split
    assert "<script" not in md and "<img" not in md


def test_unreadable_files_become_warnings(runs, tmp_path):
    run = copy(runs, "train", tmp_path / "train")
    (run / "eval.json").write_text("{not json")
    (run / "config.yaml").write_text("data: [unclosed")
    html, md = report(run)
    assert "eval.json is unreadable or not valid JSON" in html and "config.yaml is unreadable" in md


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    (tmp_path / "empty" / "plots").mkdir(parents=True)
    with pytest.raises(RunDirError, match="not a selfnas run"):
        write_report(tmp_path / "empty")


def test_optuna_study_section_shows_plots_correlations_and_best_trials(tmp_path):
    from selfnas.api import search

    cells = ["search.space=cells", "search.strategy=random", "search.nodes=2", "search.cell_width=4",
             "search.cell_layers=3", "search.trial_epochs=1", "search.pruner=none", "search.trials=3",
             "search.probe_limit=300"]  # fmt: skip
    search(build_config(overrides=[*TINY, *cells]), out=tmp_path / "s", quiet=True)
    html, md = report(tmp_path / "s")
    study = json.loads((tmp_path / "s" / "study.json").read_text())
    assert "Optuna study" in html and f"best: trial {study['best_trial']}" in html
    assert "Do the label-free scores predict accuracy?" in html and "rankme vs linear_acc" in html
    assert "Best 3 of 3 trials" in html
    assert images(html) >= 3  # history, importance or scatter, and the found cells
    assert "trials/0000" not in html  # the trials are summarised, not each reported as a run


def _pipeline(runs: Path, root: Path, found: tuple, hand: tuple, warning: str | None) -> Path:
    """A quickstart-like directory: search/, found/, hand/, pipeline.yaml and a summary.json with
    the given test scores (a number for one seed, a list per seed)."""
    for stage, source in (("search", "search"), ("found", "train"), ("hand", "train")):
        copy(runs, source, root / stage)
    (root / "pipeline.yaml").write_text("method: {}\n")
    summary = {
        "method": "simsiam", "data": "synthetic", "seeds": 1,
        "found": {"knn": {"test": found[0]}, "linear": {"test": found[1]}},
        "hand": {"knn": {"test": hand[0]}, "linear": {"test": hand[1]}},
        "sizes": {"found": {"head_params": 1234, "params": 5000, "flops": 10_000},
                  "hand": {"head_params": 4321, "params": 8000, "flops": 12_000}},
        "decision_warning": warning,
    }  # fmt: skip
    atomic_write_json(root / "summary.json", summary)
    return root


def test_quickstart_report_starts_with_the_verdict_and_warns_when_the_search_did_not_decide(runs, tmp_path):
    from selfnas.pipeline import search_decision

    warning = search_decision(runs / "search")  # the tiny search (a few steps) has not decided
    assert warning is not None and "barely decided" in warning
    root = _pipeline(runs, tmp_path / "qs", (0.7157, 0.7331), (0.7126, 0.7442), warning)
    html, md = report(root)
    sentence = (
        "found heads are 0.31 kNN points better and 1.11 linear points worse on test, one seed: "
        "no evidence of better heads."
    )
    assert sentence in html and sentence in md
    assert html.index("Verdict:") < html.index("3 runs: 3 finished")  # the verdict comes first
    assert md.index("**Verdict:**") < md.index("**State:**")
    assert "barely decided" in html[: html.index("3 runs: 3 finished")] and "**Warning:**" in md
    assert "1.23k" in html and "4.32k" in html and "0.29×" in html  # head parameters of both sides


def test_a_decided_search_and_a_multi_seed_win_read_as_such(runs, tmp_path):
    root = _pipeline(runs, tmp_path / "qs", ([0.72, 0.73, 0.74], [0.75] * 3), ([0.70] * 3, [0.74] * 3), None)
    html, md = report(root)
    assert "3 seeds: the found heads are better on every seed." in html
    assert "barely decided" not in html.split('class="subrun"')[0] and "**Warning:**" not in md
    assert 'class="verdict better"' in html


def test_a_run_that_is_not_a_comparison_has_no_verdict(runs, tmp_path):
    html, md = report(copy(runs, "train", tmp_path / "train"))
    assert "Verdict" not in html and "Verdict" not in md


def test_backbone_pipeline_report_leads_with_both_verdicts_and_what_was_found(runs, tmp_path):
    root = tmp_path / "qs"
    for stage, source in (
        ("search", "search"),
        ("found", "train"),
        ("default", "train"),
        ("random", "train"),
    ):
        copy(runs, source, root / stage)
    (root / "pipeline.yaml").write_text("method: {}\n")
    (root / "search" / "trials.jsonl").write_text(
        json.dumps({"number": 0, "state": "COMPLETE", "intermediate": {"1": -0.5}, "screen_score": 0.25,
                    "scores": {"view_retrieval": 0.5}, "parameters": 14688, "duration_s": 9.5}) + "\n"
        + json.dumps({"number": 1, "state": "PRUNED", "intermediate": {"1": -0.1}, "screen_score": 0.125,
                      "scores": {"view_retrieval": 0.1}, "parameters": 13696, "duration_s": 4.0}) + "\n"
    )  # fmt: skip

    def side(knn: float, linear: float, params: int, flops: int) -> dict:
        scores = {"knn": {"val": knn, "test": knn}, "linear": {"val": linear, "test": linear}}
        return {**scores, "feature_dim": 64, "head_params": 100, "params": params, "flops": flops}

    summary = {
        "method": "simsiam", "data": "synthetic", "space": "cells", "seeds": 1,
        "found": side(0.60, 0.72, 4000, 5_000_000), "default": side(0.62, 0.70, 5000, 20_000_000),
        "random": side(0.53, 0.67, 4000, 6_000_000), "default_rule": "resnet_small widened",
        "search": {"score": "view_retrieval", "trials": {"COMPLETE": 1, "PRUNED": 1},
                   "screen": {"candidates": 16, "seconds": 60.0}},
        "costs": {"search": 120.0, "found": 170.0, "default": 90.0, "random": 160.0},
    }  # fmt: skip
    atomic_write_json(root / "summary.json", summary)
    html, md = report(root)
    over_default = (
        "found backbone is 2.00 kNN points worse and 2.00 linear points better than the hand-crafted "
        "backbone on test, one seed, at 0.80× its parameters (4k vs 5k) and 0.25× its FLOPs (5M vs 20M): "
        "no evidence of better backbone."
    )
    over_random = "found backbone is 7.00 kNN points better and 5.00 linear points better than the random"
    lines = [line for line in md.splitlines()[1:] if line.strip()]
    assert lines[0] == f"**Verdict:** {over_default}"
    assert over_random in md.split("## Searched and found")[0]
    assert over_default in html and html.index(over_random) < html.index("Searched and found</h")
    lead = md.split("## Searched and found")[1].split("**State:**")[0]
    assert "16 candidates scored at initialisation" in lead and "(1 complete, 1 pruned)" in lead
    assert "| found (searched) | 60.00% | 60.00% | 72.00% | 72.00% | 64 | 4k | 5M |" in lead
    assert "| 1 | pruned | 1 | 0.125 | 0.1 | - | 13,696 | 4 |" in lead
    assert "| all | 9.0 min |" in lead
    assert images(html) >= 1  # the found cells
