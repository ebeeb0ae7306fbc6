import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from selfnas.config import build_config
from selfnas.errors import RunDirError
from selfnas.evaluation import evaluate
from selfnas.info import format_info, run_info
from selfnas.models.genotype import HeadGenotype, save_genotype
from selfnas.models.heads import HeadLayer, HeadSpec
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer
from tests.conftest import TINY


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("info") / "run"
    argv = ["selfnas", "train", "--data-root", str(Path.home() / "data"), "--seed", "0"]
    cfg = build_config(overrides=[*TINY, "optim.epochs=1", "run.knn_every=0"])
    Trainer(cfg, RunDir.prepare(path), quiet=True, argv=argv).fit()
    evaluate(path, device="cpu", linear=False)
    return path


def test_info_gathers_the_run_files(run):
    info = run_info(run)
    assert info["kind"] == "train" and info["status"]["state"] == "finished"
    assert info["provenance"]["seed"] == 0 and info["config"]["method"]["name"] == "simsiam"
    assert set(info["eval"]["knn"]) == {"val", "test"} and info["genotype"] is None
    assert info["last_epoch"]["epoch"] == 1 and info["weights"]
    json.dumps(info)  # plain data


def test_format_names_seed_versions_and_command_without_home(run, monkeypatch):
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: run.parent))  # the run lies "in home"
    text = format_info(run_info(run))
    versions = json.loads((run / "provenance.json").read_text())["versions"]
    assert len(text.splitlines()) > 8
    assert (
        re.search(r"^seed +0$", text, re.M)
        and f"torch {versions['torch']}" in text
        and f"selfnas {versions['selfnas']}" in text
    )
    assert "selfnas train --data-root ~/data --seed 0" in text
    assert "kNN" in text and "val " in text
    assert str(run.parent) not in text and "~/run" in text


def test_format_shows_found_heads_and_partial_runs(run, tmp_path):
    shutil.copytree(run, tmp_path / "found")
    projector = HeadSpec((HeadLayer("linear_bn_mish", 16), HeadLayer("avg_pool_3", 16)))
    save_genotype(tmp_path / "found" / "genotype.json", HeadGenotype(projector, None, "simclr"))
    assert "linear_bn_mish(16) -> avg_pool_3(16)" in format_info(run_info(tmp_path / "found"))
    (tmp_path / "partial").mkdir()
    shutil.copy(run / "config.yaml", tmp_path / "partial" / "config.yaml")
    text = format_info(run_info(tmp_path / "partial"))
    assert "unknown" in text and "none yet" in text


def test_not_a_run(tmp_path):
    with pytest.raises(RunDirError, match="not a selfnas run"):
        run_info(tmp_path)


def _as_trained_with_labels(run, dest, section: str, settings: dict) -> Path:
    """A copy of ``run`` whose config and eval.json are those of a ``section`` run (supervised or
    finetune) that ``selfnas eval`` also probed: frozen kNN with a clipped k, and its classifier."""
    shutil.copytree(run, dest)
    config = yaml.safe_load((dest / "config.yaml").read_text())
    (dest / "config.yaml").write_text(yaml.safe_dump({**config, section: settings}))
    scores = {"data": "synthetic", "knn": {"val": 0.6, "test": 0.7}, "knn_k": 100}
    own = {"val": 0.5, "test": 0.25, "labels": {"budget": "10%", "n": 48}}
    (dest / "eval.json").write_text(json.dumps({**scores, section: own}))
    return dest


def test_a_supervised_run_names_its_protocol_and_no_ssl_method(run, tmp_path):
    path = _as_trained_with_labels(run, tmp_path / "sup", "supervised", {"epochs": 2, "batch_size": 64})
    info = run_info(path)
    assert info["kind"] == "supervised" and info["eval"]["supervised"]["test"] == 0.25
    text = format_info(info)
    assert re.search(r"^method +none: trained from scratch with labels$", text, re.M)
    assert re.search(r"^budget +2 epochs x batch 64 \(supervised, from scratch\)$", text, re.M)
    assert re.search(r"^frozen kNN +val 60\.00%, test 70\.00% \(k=100\)$", text, re.M)  # the k it used
    assert re.search(r"^supervised \(from scratch\) +val 50\.00%, test 25\.00%$", text, re.M)


def test_a_finetune_run_names_its_source_and_label_budget(run, tmp_path):
    settings = {"source": "runs/pretrained", "labels": "10%", "epochs": 3, "batch_size": 16}
    info = run_info(_as_trained_with_labels(run, tmp_path / "ft", "finetune", settings))
    assert info["kind"] == "finetune"
    text = format_info(info)
    assert re.search(r"^source +runs/pretrained$", text, re.M) and "(finetune, finished" in text
    assert re.search(
        r"^method +none: fine-tuned with labels \(the source was pretrained with simsiam\)$", text, re.M
    )
    assert re.search(r"^fine-tuned \(10% labels\) +val 50\.00%, test 25\.00%$", text, re.M)
