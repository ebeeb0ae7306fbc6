import json
import re
import shutil
from pathlib import Path

import pytest

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
