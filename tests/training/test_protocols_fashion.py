"""The papers' evaluation protocols on real Fashion-MNIST (slow): supervised training of a small
DARTS cell network from scratch reaches a stated accuracy, and a 10%-label fine-tune beats the
frozen linear probe trained on the same labels."""

import json

import pytest
import torch

import selfnas
from selfnas.build import load_pretrained
from selfnas.config import build_config
from selfnas.evaluation import evaluate_features
from selfnas.models.published_genotypes import PUBLISHED_GENOTYPES
from selfnas.training.finetune import LABELS_FILE, finetune_data

pytestmark = pytest.mark.slow

V2 = json.dumps(PUBLISHED_GENOTYPES.get("DARTS_V2").to_json())


def test_darts_v2_cells_trained_with_labels_reach_75_percent_on_fashion_mnist(tmp_path, fashion_mnist):
    """DARTS_V2 at C=8, 5 cells (about 30k parameters), 3 epochs on 5,000 images with the DARTS
    aids (cutout, drop-path): >= 75% on val and on the 10,000 test images (measured 78.2% val,
    78.7% test on a busy 2-core CPU)."""
    config = build_config(overrides=[
        "data.name=fashion-mnist", f"data.root={fashion_mnist}", "data.train_limit=5000",
        "model.backbone=darts_cells", f"model.backbone_kwargs={{width: 8, layers: 5, genotype: {V2}}}",
        "supervised.epochs=3", "supervised.batch_size=64", "supervised.lr=0.05",
        "supervised.cutout=8", "supervised.drop_path=0.1",
    ])  # fmt: skip
    result = selfnas.train_supervised(config, out=tmp_path / "cells", quiet=True)["supervised"]
    assert result["test"] >= 0.75 and result["val"] >= 0.75, result


def test_a_ten_percent_fine_tune_beats_the_frozen_linear_probe_on_the_same_labels(tmp_path, fashion_mnist):
    ssl = build_config(overrides=[
        "data.name=fashion-mnist", f"data.root={fashion_mnist}", "data.train_limit=5000",
        "optim.epochs=3", "run.eval_at_end=false", "run.knn_every=0",
    ])  # fmt: skip
    selfnas.train(ssl, out=tmp_path / "ssl", quiet=True)
    tuned = selfnas.finetune(tmp_path / "ssl", labels="10%", out=tmp_path / "ft", quiet=True,
                             overrides=["finetune.epochs=10"])["finetune"]  # fmt: skip

    config = build_config(base=__import__("yaml").safe_load((tmp_path / "ft" / "config.yaml").read_text()))
    data, subset = finetune_data(config)  # the fine-tune's own labels, drawn again from its config
    recorded = json.loads((tmp_path / "ft" / LABELS_FILE).read_text())
    assert subset.index.tolist() == recorded["index"] and len(data.train) == recorded["n"] == 500
    frozen = evaluate_features(load_pretrained(tmp_path / "ssl"), data, torch.device("cpu"))["linear"]
    assert tuned["val"] > frozen["val"] and tuned["test"] > frozen["test"], (tuned, frozen)
