import json

import pytest
import torch
from safetensors.torch import load_file

from selfnas.api import with_genotype
from selfnas.config import build_config
from selfnas.io import read_jsonl
from selfnas.models.genotype import load_genotype
from selfnas.nas.strategies import darts as darts_mod
from selfnas.nas.strategies.darts import HeadSearchTrainer
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer

SEARCH = ["search.projector_layers=3", "search.predictor_layers=2", "run.knn_every=0"]


def _search(tmp_path, overrides, name="s", resume=False):
    cfg = build_config(overrides=[*overrides, *SEARCH])
    trainer = HeadSearchTrainer(cfg, RunDir.prepare(tmp_path / name, resume=resume), quiet=True)
    trainer.fit(resume=resume)
    return trainer


@pytest.mark.parametrize("method", ["simsiam", "simclr", "moco", "byol"])
@pytest.mark.parametrize("order", [1, 2])
def test_alphas_move_and_a_genotype_is_written(tmp_path, tiny_overrides, method, order):
    extra = ["method.hparams={queue_size: 128}"] if method == "moco" else []
    trainer = _search(tmp_path, [*tiny_overrides, f"method.name={method}", f"search.order={order}", *extra])
    heads = trainer.supernets()
    assert set(heads) == ({"projector", "predictor"} if method in ("simsiam", "byol") else {"projector"})
    for head in heads.values():
        assert head.alpha.abs().sum() > 0  # started at zero
    genotype = load_genotype(tmp_path / "s" / "genotype.json")
    assert len(genotype.projector.layers) == 4 and genotype.method == method
    assert (genotype.predictor is not None) == (method in ("simsiam", "byol"))
    epochs = [r for r in read_jsonl(tmp_path / "s" / "metrics.jsonl") if r["kind"] == "epoch"]
    assert len(epochs) == 2 and "alphas" in epochs[0] and "parameter_free" in epochs[0]
    assert (tmp_path / "s" / "plots" / "alphas_projector.png").stat().st_size > 1000


def test_momentum_targets_copy_the_online_alphas(tmp_path, tiny_overrides):
    trainer = _search(tmp_path, [*tiny_overrides, "method.name=byol"])
    online = trainer.model.projector.alpha
    target = trainer.model.target.net[1].alpha
    assert torch.equal(online, target)


def test_search_is_deterministic_under_a_seed(tmp_path, tiny_overrides):
    a = _search(tmp_path, tiny_overrides, "a")
    b = _search(tmp_path, tiny_overrides, "b")
    assert torch.equal(a.model.projector.alpha, b.model.projector.alpha)
    assert (tmp_path / "a" / "genotype.json").read_text() == (tmp_path / "b" / "genotype.json").read_text()


def test_search_resumes_after_a_crash_to_the_same_genotype(tmp_path, tiny_overrides, monkeypatch):
    overrides = [*tiny_overrides, "search.order=2"]
    _search(tmp_path, overrides, "full")
    original = darts_mod.Trainer._save_checkpoint.__globals__["save_checkpoint"]

    def crash_after(path, model, optimizers, extra):
        original(path, model, optimizers, extra)
        if extra["step"] == 6:
            raise KeyboardInterrupt

    monkeypatch.setitem(darts_mod.Trainer._save_checkpoint.__globals__, "save_checkpoint", crash_after)
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path, overrides, "killed")
    monkeypatch.setitem(darts_mod.Trainer._save_checkpoint.__globals__, "save_checkpoint", original)
    _search(tmp_path, overrides, "killed", resume=True)
    a, b = (
        load_file(str(tmp_path / "full" / "model.safetensors")),
        load_file(str(tmp_path / "killed" / "model.safetensors")),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "full" / "genotype.json").read_text() == (
        tmp_path / "killed" / "genotype.json"
    ).read_text()


def test_collapse_remedies(tmp_path, tiny_overrides):
    frozen = _search(tmp_path, [*tiny_overrides, "search.warmup_epochs=2"], "warm")
    assert torch.equal(frozen.model.projector.alpha, torch.zeros_like(frozen.model.projector.alpha))
    stopped = _search(tmp_path, [*tiny_overrides, "search.entropy_stop=100.0"], "stop")
    epochs = [r for r in read_jsonl(tmp_path / "stop" / "metrics.jsonl") if r["kind"] == "epoch"]
    assert stopped.arch_stopped_at == 1 and epochs[-1]["arch_frozen"]
    capped = _search(
        tmp_path, [*tiny_overrides, "search.max_parameter_free=0", "search.beta_decay=1.0"], "cap"
    )
    g = capped.genotype()
    assert all(layer.op not in ("identity", "max_pool_3", "avg_pool_3") for layer in g.projector.layers)


def test_found_heads_retrain_from_scratch(tmp_path, tiny_overrides):
    _search(tmp_path, tiny_overrides, "s")
    cfg = with_genotype(build_config(overrides=tiny_overrides), tmp_path / "s" / "genotype.json")
    found = load_genotype(tmp_path / "s" / "genotype.json")
    trainer = Trainer(cfg, RunDir.prepare(tmp_path / "retrain"), quiet=True)
    assert len(trainer.model.projector) == len(found.projector.layers)
    trainer.fit()
    saved = json.loads(json.dumps(cfg.method.projector))
    assert saved == found.projector.to_json()


@pytest.mark.parametrize("space", ["heads", "cells"])
@pytest.mark.parametrize("per_view", [True, False])
def test_search_supernets_take_the_per_view_bn_setting(tmp_path, tiny_overrides, space, per_view):
    trainer_cls = darts_mod.CellSearchTrainer if space == "cells" else HeadSearchTrainer
    cells = ["search.cell_width=4", "search.cell_layers=3", "search.nodes=2"] if space == "cells" else []
    cfg = build_config(overrides=[*tiny_overrides, *SEARCH, f"search.space={space}", *cells,
                                  f"method.per_view_bn={str(per_view).lower()}"])  # fmt: skip
    trainer = trainer_cls(cfg, RunDir.prepare(tmp_path / "s"), quiet=True)
    assert trainer.model.per_view_bn is per_view
