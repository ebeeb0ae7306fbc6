"""Reports of runs trained with labels (supervised from scratch, fine-tuning): the setup line names
the protocol, the curves show the loss and the val accuracy, and the Results table puts the frozen
kNN / linear probe beside the run's own classifier, val then test."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from selfnas.evaluation import evaluate
from selfnas.io import read_jsonl
from selfnas.render import plots
from selfnas.render.tables import percent
from selfnas.report import labeled_curves
from selfnas.rundir import RunDir
from tests.report.test_report import report
from tests.test_evaluation import build_labeled_runs


@pytest.fixture(scope="module")
def labeled(tmp_path_factory) -> Path:
    """``ssl`` (pretrained, evaluated), ``ft`` (fine-tuned from it on 10% of the labels), ``sup``."""
    return build_labeled_runs(tmp_path_factory.mktemp("protocols"))


def copy(labeled: Path, name: str, dest: Path) -> Path:
    return Path(shutil.copytree(labeled / name, dest / name))


def setup_of(md: str) -> str:
    return next(line for line in md.splitlines() if line.startswith("**Setup:**"))


def results(md: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of report.md's Results table."""
    section = md[md.index("## Results") :].split("\n\n")
    lines = next(block for block in section if block.startswith("| ")).splitlines()
    cells = [line.strip("| ").split(" | ") for line in lines]
    return cells[0], cells[2:]


def evaluation(run: Path) -> dict:
    return json.loads((run / "eval.json").read_text())


def test_a_supervised_report_says_supervised_and_never_self_supervised(labeled, tmp_path):
    run = copy(labeled, "sup", tmp_path)
    html, md = report(run)
    setup = setup_of(md)
    assert setup.startswith("**Setup:** supervised training from scratch on synthetic: backbone resnet_small")
    said = ["labels of 256 train images", "2 epochs, batch 64", "SGD (momentum 0.9), lr 0.025 cosine to 0",
            "gradient clip 5", "cutout 4 px", "label smoothing 0.1", "seed 0"]  # fmt: skip
    assert [s for s in said if s not in setup] == []
    assert "drop-path" not in setup and "auxiliary" not in setup and "simsiam" not in setup  # not configured
    for text in (html, md):
        assert "self-supervised pretraining" not in text.lower() and "Frozen-backbone evaluation" not in text
        assert "supervised training from scratch" in text
    own = evaluation(run)["supervised"]
    header, rows = results(md)
    assert header == ["protocol", "backbone", "labels", "val", "test"]
    assert rows == [["supervised classifier, trained from scratch", "this run's", "all 256",
                     percent(own["val"]), percent(own["test"])]]  # fmt: skip
    assert f"selfnas eval {run} adds them" in md  # the frozen probes are owed, and how to get them
    last = [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "epoch"][-1]
    assert f"val accuracy {percent(last['val_acc'])} after epoch 2" in html
    assert (run / "plots" / "curves.png").exists()


def test_after_eval_the_supervised_report_puts_the_frozen_probes_beside_its_classifier(labeled, tmp_path):
    run = copy(labeled, "sup", tmp_path)
    evaluate(run, device="cpu")
    html, md = report(run)
    result = evaluation(run)
    frozen = "this run's (supervised), frozen"
    header, rows = results(md)
    assert header[3:] == ["val", "test"]
    assert rows == [
        ["frozen kNN top-1 (k=200)", frozen, "all 200 (bank)", percent(result["knn"]["val"]),
         percent(result["knn"]["test"])],
        [f"frozen linear probe (weight decay {result['linear']['weight_decay']:g})", frozen, "all 200",
         percent(result["linear"]["val"]), percent(result["linear"]["test"])],
        ["supervised classifier, trained from scratch", "this run's", "all 256",
         percent(result["supervised"]["val"]), percent(result["supervised"]["test"])],
    ]  # fmt: skip
    assert "adds them" not in md and percent(result["linear"]["test"]) in html
    assert "self-supervised pretraining" not in html.lower()


def test_a_finetune_report_shows_fine_tuned_and_frozen_numbers_with_the_label_fraction(labeled, tmp_path):
    run = copy(labeled, "ft", tmp_path)  # its source stays where it was trained: labeled/ssl
    html, md = report(run)
    own, source = evaluation(run)["finetune"], evaluation(labeled / "ssl")
    setup = setup_of(md)
    assert setup.startswith(
        f"**Setup:** fine-tuning on synthetic of the backbone pretrained by {labeled / 'ssl'}"
    )
    n = own["labels"]["n"]
    said = [
        f"10% of the train labels ({n} images: a seeded, class-balanced subset, seed 0)",
        "2 epochs, batch 16", "Nesterov momentum 0.9", "backbone LR x0.1", "val selects the epoch",
    ]  # fmt: skip
    assert [s for s in said if s not in setup] == []
    header, rows = results(md)
    assert header == ["protocol", "backbone", "labels", "val", "test"]
    pretrained, wd = "pretrained (ssl), frozen", source["linear"]["weight_decay"]
    assert rows == [
        ["frozen kNN top-1 (k=200)", pretrained, "all 200 (bank)",
         percent(source["knn"]["val"]), percent(source["knn"]["test"])],
        [f"frozen linear probe (weight decay {wd:g})", pretrained,
         "all 200", percent(source["linear"]["val"]), percent(source["linear"]["test"])],
        ["fine-tuned end to end, linear head", "pretrained, then fine-tuned", f"10% ({n})",
         percent(own["val"]), percent(own["test"])],
    ]  # fmt: skip
    assert f"Fine-tuning keeps the weights of epoch {own['epoch']}, the best on val; test only reports" in md
    assert percent(source["knn"]["test"]) in html and percent(own["test"]) in html
    assert "self-supervised pretraining" not in html.lower()


@pytest.mark.parametrize("break_source", ["gone", "other data"])
def test_a_finetune_report_says_why_the_source_scores_are_missing(labeled, tmp_path, break_source):
    run = copy(labeled, "ft", tmp_path)
    if break_source == "gone":
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["finetune"]["source"] = str(tmp_path / "elsewhere" / "pretrained")
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        says = f"The source run {tmp_path / 'elsewhere' / 'pretrained'} was not found from here"
    else:
        source = copy(labeled, "ssl", tmp_path)  # beside the run: found by its name
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["finetune"]["source"] = "moved/ssl"
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        result = evaluation(source)
        (source / "eval.json").write_text(json.dumps({**result, "data": "digits"}))
        says = "it was evaluated on digits, this run on synthetic; evaluate it on this run's data: "
        says += f"selfnas eval {source} --data synthetic"
    _, md = report(run)
    _, rows = results(md)
    assert [row[0] for row in rows] == ["fine-tuned end to end, linear head"]
    assert says in md


def test_the_curves_of_a_finetune_plot_its_loss_and_val_accuracy_not_ssl_ones(labeled, tmp_path, monkeypatch):
    run = copy(labeled, "ft", tmp_path)
    records = read_jsonl(run / "metrics.jsonl")
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    drawn = []
    monkeypatch.setattr(labeled_curves, "save_figure", lambda fig, path: drawn.append(fig) or path)
    labeled_curves.plot_labeled_curves(RunDir(run))
    loss, acc = drawn[0].axes
    assert loss.get_title() == "training loss (cross-entropy)" and acc.get_title() == "val accuracy (%)"
    assert list(loss.lines[0].get_ydata()) == [r["loss"] for r in steps]
    assert list(acc.lines[0].get_ydata()) == [100 * r["val_acc"] for r in epochs]
    kept = evaluation(run)["finetune"]["epoch"]
    assert list(acc.lines[1].get_xdata()) == [kept]  # the star: the epoch fine-tuning kept
    monkeypatch.undo()

    def no_ssl_curves(_run):
        raise AssertionError("the SSL curves (SSL loss, kNN monitor) drawn for a run trained with labels")

    monkeypatch.setattr(plots, "plot_training_curves", no_ssl_curves)
    html, _ = report(run)
    assert (run / "plots" / "curves.png").exists() and f"epoch {kept} kept (best val" in html


def test_a_directory_of_runs_compares_the_protocols(labeled, tmp_path):
    root = tmp_path / "runs"
    for name in ("ssl", "sup"):
        copy(labeled, name, root)
    _, md = report(root)
    table = md[md.index("## Runs compared") :].split("\n\n")[1].splitlines()
    header = table[0].strip("| ").split(" | ")
    rows = {cells[0]: dict(zip(header, cells, strict=True)) for cells in
            (line.strip("| ").split(" | ") for line in table[2:])}  # fmt: skip
    sup, ssl = evaluation(root / "sup")["supervised"], evaluation(root / "ssl")
    assert rows["sup"]["protocol"] == "supervised (from scratch)"
    assert rows["sup"]["classifier test"] == percent(sup["test"]) and rows["sup"]["kNN test"] == "-"
    assert rows["ssl"]["protocol"] == "SSL" and rows["ssl"]["kNN test"] == percent(ssl["knn"]["test"])
    assert rows["ssl"]["classifier test"] == "-"
