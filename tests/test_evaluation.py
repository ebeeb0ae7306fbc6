import json

import pytest

from selfnas.config import build_config
from selfnas.errors import ConfigError
from selfnas.evaluation import evaluate
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer
from tests.conftest import TINY


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
