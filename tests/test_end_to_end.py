"""End to end on real data: every SSL method learns on Fashion-MNIST and on an image folder."""

import pytest
import torch
from PIL import Image

from selfnas.config import build_config
from selfnas.io import read_jsonl
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer
from tests.conftest import needs_fashion_mnist

METHODS = ["simsiam", "simclr", "moco", "byol"]


def _train(tmp_path, overrides):
    cfg = build_config(overrides=overrides)
    trainer = Trainer(cfg, RunDir.prepare(tmp_path / "run"), quiet=True)
    trainer.fit()
    records = read_jsonl(trainer.run.metrics)
    steps = [r["loss"] for r in records if r["kind"] == "step"]
    knn = [r["knn_val"] for r in records if r["kind"] == "epoch"]
    return steps, knn


def _falls(losses, method):
    if method == "moco":
        losses = losses[1:]  # the first step meets the random initial queue: easy negatives, low loss
    head, tail = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    return tail < head


@pytest.mark.slow
@needs_fashion_mnist
@pytest.mark.parametrize("method", METHODS)
def test_method_learns_on_fashion_mnist(tmp_path, method):
    losses, knn = _train(
        tmp_path,
        [
            "data.name=fashion-mnist",
            "data.train_limit=3072",
            f"method.name={method}",
            "method.hparams={queue_size: 1024}" if method == "moco" else "method.hparams={}",
            "optim.batch_size=128",
            "optim.epochs=2",
            "optim.warmup_epochs=0.2",
            "run.knn_bank=3072",
            "run.log_every=4",
            "run.device=cpu",
        ],
    )
    assert _falls(losses, method), losses
    assert knn[-1] > 0.5, knn  # chance is 0.1


def _write_folder(root, classes=4, per_class=48, size=20):
    g = torch.Generator().manual_seed(0)
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            img = torch.rand(3, size, size, generator=g) * 0.3
            img[c % 3] += 0.6  # a class colour
            if c >= 3:
                img[:, ::2] = 0.0  # and a stripe pattern
            arr = (img.clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
            Image.fromarray(arr).save(d / f"{i}.png")


@pytest.mark.parametrize("method", METHODS)
def test_method_learns_on_an_image_folder(tmp_path, method):
    _write_folder(tmp_path / "imgs")
    losses, knn = _train(
        tmp_path,
        [
            f"data.name=imagefolder:{tmp_path / 'imgs'}@16",
            "data.val_fraction=0.25",
            f"method.name={method}",
            "method.hparams={queue_size: 128}" if method == "moco" else "method.hparams={}",
            "model.backbone_kwargs={width: 8, depths: [1, 1]}",
            "method.proj_hidden=64",
            "method.proj_out=32",
            "method.pred_hidden=16",
            "optim.batch_size=32",
            "optim.epochs=4",
            "run.log_every=2",
            "run.device=cpu",
        ],
    )
    assert _falls(losses, method), losses
    assert knn[-1] > 0.5, knn  # chance is 0.25


@pytest.mark.slow
@needs_fashion_mnist
@pytest.mark.parametrize("method", METHODS)
def test_head_search_then_retrain_on_fashion_mnist(tmp_path, method):
    from selfnas.api import with_genotype
    from selfnas.models.genotype import load_genotype
    from selfnas.nas.strategies.darts import HeadSearchTrainer

    common = [
        "data.name=fashion-mnist", "data.train_limit=2048", f"method.name={method}",
        "method.hparams={queue_size: 1024}" if method == "moco" else "method.hparams={}",
        "optim.batch_size=128", "optim.warmup_epochs=0.2", "run.knn_bank=2048", "run.log_every=4",
        "run.device=cpu",
    ]  # fmt: skip
    search_cfg = build_config(overrides=[*common, "optim.epochs=2", "run.knn_every=0"])
    HeadSearchTrainer(search_cfg, RunDir.prepare(tmp_path / "search"), quiet=True).fit()
    genotype = load_genotype(tmp_path / "search" / "genotype.json")
    assert len(genotype.projector.layers) == 7 and genotype.method == method  # 6 searched + final
    cfg = with_genotype(
        build_config(overrides=[*common, "optim.epochs=2"]), tmp_path / "search" / "genotype.json"
    )
    trainer = Trainer(cfg, RunDir.prepare(tmp_path / "run"), quiet=True)
    trainer.fit()
    records = read_jsonl(trainer.run.metrics)
    assert _falls([r["loss"] for r in records if r["kind"] == "step"], method)
    knn = [r["knn_val"] for r in records if r["kind"] == "epoch"]
    assert knn[-1] > 0.4, knn  # chance is 0.1


@pytest.mark.slow
@needs_fashion_mnist
@pytest.mark.parametrize("strategy", ["tpe", "darts"])
def test_cell_search_then_retrain_then_eval_on_fashion_mnist(tmp_path, strategy):
    """The user's path through the CLI: search cells, retrain the found genotype, evaluate it. The
    random and evolutionary samplers take the same path as TPE; their studies are tested on
    synthetic data (tests/nas/optuna/test_optuna_search.py), which saves 4 minutes here."""
    import json

    from tests.conftest import run_cli, set_args

    common = ["data.train_limit=2048", "data.val_fraction=0.02", "method.name=simclr",
              "optim.batch_size=128", "optim.warmup_epochs=0.2", "run.knn_bank=2048", "run.device=cpu",
              "run.threads=1", "search.nodes=2", "search.cell_width=8", "search.cell_layers=3",
              "search.probe_limit=1024"]  # fmt: skip
    cells = ["--space", "cells", "--strategy", strategy, "--quiet", "--out", str(tmp_path / "search")]
    if strategy == "darts":
        cells += ["--epochs", "1"]
    else:
        # label evaluation of trials is covered by tests/nas/optuna/test_trial_scores.py
        cells += ["--trials", "3", "--set", "search.trial_epochs=1", "--set", "search.population=2",
                  "--set", "search.label_eval=false"]  # fmt: skip
    run_cli("search", *cells, *set_args(common), timeout=900, check=True)
    genotype = tmp_path / "search" / "genotype.json"
    assert json.loads(genotype.read_text())["space"] == "cells"
    width = ["model.backbone_kwargs={width: 8, layers: 3}", "optim.epochs=2", "run.eval_at_end=false"]
    run_cli("train", "--genotype", str(genotype), "--out", str(tmp_path / "run"), "--quiet",
            *set_args([*common, *width]), timeout=900, check=True)  # fmt: skip
    limits = ["--train-limit", "3000", "--test-limit", "1500"]
    run_cli("eval", str(tmp_path / "run"), *limits, timeout=900, check=True)
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert result["n_train"] == 3000 and result["n_held_out"] == {"val": 1200, "test": 1500}
    assert result["knn"]["test"] > 0.4 and result["linear"]["test"] > 0.4  # chance is 0.1
