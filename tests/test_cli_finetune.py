"""``selfnas finetune`` says how many labels it used and prints the frozen probe fitted on those same
labels beside its result, and that the source run's own probe used more."""

import json

import pytest
from typer.testing import CliRunner

from selfnas.cli import app
from selfnas.config import build_config
from selfnas.evaluation import evaluate
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer
from tests.conftest import TINY


@pytest.fixture(scope="module")
def ssl_run(tmp_path_factory):
    """A tiny pretrained SSL run on the synthetic data, evaluated on 200 training images."""
    out = tmp_path_factory.mktemp("finetune") / "ssl"
    limits = ["run.eval_train_limit=200", "run.eval_test_limit=40"]
    cfg = build_config(
        overrides=[*TINY, "optim.epochs=1", "optim.batch_size=128", "run.knn_every=0", *limits]
    )
    Trainer(cfg, RunDir.prepare(out), quiet=True).fit()
    evaluate(out, device="cpu", quiet=True)
    return out


def test_finetune_prints_its_labels_and_the_probe_on_the_same_labels(ssl_run, tmp_path):
    out = tmp_path / "ft"
    args = ["finetune", str(ssl_run), "--labels", "10%", "--out", str(out), "--quiet",
            "--set", "finetune.epochs=1", "--set", "finetune.batch_size=16"]  # fmt: skip
    proc = CliRunner().invoke(app, args)
    assert proc.exit_code == 0, proc.output
    section = json.loads((out / "eval.json").read_text())["finetune"]
    labels = section["labels"]
    n, of = labels["n"], labels["of"]
    assert n == len(json.loads((out / "label_subset.json").read_text())["index"]) and n < of
    assert f"labels used: {n:,} of the {of:,} labeled training images (10%" in proc.output
    probe = f"{100 * section['probe_val']:.1f}%"
    tuned = f"fine-tuned val {100 * section['val']:.1f}%, test {100 * section['test']:.1f}%"
    assert f"same {n:,} labels: frozen linear probe val {probe} (the head's start), {tuned}" in proc.output
    assert "the source run's eval.json probe used 200 labels" in proc.output
