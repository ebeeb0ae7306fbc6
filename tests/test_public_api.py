"""The public API names stay functions: no subpackage shadows one, however often it is called."""

from __future__ import annotations

import importlib

import torch

import selfnas
from selfnas.config import build_config
from tests.conftest import TINY
from tests.studies.conftest import FAKE_SCENARIOS, STUDY_TRAIN, FakeSpace, fake_load_scenario

FAST = [*TINY, "optim.epochs=1", "run.knn_every=0"]
HEADS = ["search.projector_layers=1", "search.predictor_layers=1", "optim.epochs=1", "search.strategy=darts"]


def test_every_public_api_function_twice_in_one_process(tmp_path, monkeypatch, single_thread):
    from selfnas.studies import plan, runner
    from selfnas.studies.plan import build_study_config

    monkeypatch.setattr(plan, "MACRO_SPACES", {"fake-variants": FakeSpace})
    monkeypatch.setattr(plan, "scenario_names", lambda offline_only=False: list(FAKE_SCENARIOS))
    monkeypatch.setattr(runner, "load_scenario", fake_load_scenario)
    for round_ in range(2):
        # importing the modules behind the names is what once rebound `selfnas.train` to a package
        for module in ("selfnas.training.trainer", "selfnas.studies.runner", "selfnas.api", "selfnas.build"):
            importlib.import_module(module)
        for name in (
            "train",
            "evaluate",
            "search",
            "study",
            "build_model",
            "load_pretrained",
            "load_dataset",
        ):
            assert callable(getattr(selfnas, name)), f"selfnas.{name} is {getattr(selfnas, name)!r}"
        run = tmp_path / f"train{round_}"
        assert "knn" in selfnas.train(build_config(overrides=FAST), out=run, quiet=True)
        assert set(selfnas.evaluate(run, linear=False)["knn"]) == {"val", "test"}
        search = tmp_path / f"search{round_}"
        assert selfnas.search(build_config(overrides=[*TINY, *HEADS]), out=search, quiet=True)["genotype"]
        study = build_study_config(
            None, {"space": "fake-variants", "archs": 1, "scenarios": ["syn-source"]}, STUDY_TRAIN
        )
        assert selfnas.study(study, out=tmp_path / f"study{round_}", quiet=True)["complete"]
        backbone = selfnas.load_pretrained(run)
        assert backbone(torch.zeros(2, 3, 16, 16)).shape[0] == 2
        assert isinstance(selfnas.build_model(search, part="backbone"), torch.nn.Module)
        assert len(selfnas.load_dataset("synthetic").train) > 0
