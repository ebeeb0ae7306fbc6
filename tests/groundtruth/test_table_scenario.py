"""A ground-truth table on a scenario: rows pretrain on its unlabeled view, the truth probes its labels."""

from __future__ import annotations

import torch

from selfnas.data.catalog import load_dataset
from selfnas.groundtruth.tables import build_table, build_table_config, table_data
from selfnas.io import read_jsonl

from ..data.test_scenarios import write_png_classes
from .test_tables import TINY_TABLE


def scenario_table(folder, *extra):
    spec = f"pngs=imagefolder:{folder}@28"
    options = [o for o in TINY_TABLE if not o.startswith("data.")]
    return build_table_config(
        {"archs": 1, "seeds": 1, "seeded_archs": 1},
        [*options, f"data.name={spec}", "data.val_fraction=0.25", "data.train_limit=40", *extra],
    )


def flat(images):
    return sorted(images.images[:, 0, 0, 0].tolist())  # one value per image (distinct by construction)


def test_a_scenario_tables_truth_has_labeled_train_val_and_test_apart_from_the_unlabeled_ssl_view(tmp_path):
    folder = write_png_classes(tmp_path / "pngs", classes=8, per_class=12)
    config = scenario_table(folder)
    data = table_data(config)
    ssl, truth = data.ssl, data.truth
    assert ssl.train.labels is None and ssl.val.labels is None  # pretraining: no label anywhere
    assert truth.train.labels is not None and truth.val.labels is not None and truth.test.labels is not None
    probe = load_dataset(config.train.data.name, pretraining=False)  # the scenario's labeled splits
    labeled = flat(probe.train)
    n_val = round(len(labeled) * 0.25)
    assert len(truth.val) == n_val and len(truth.train) == min(40, len(labeled) - n_val)
    assert set(flat(truth.val)).isdisjoint(flat(truth.train))  # the probe never fits on val
    assert set(flat(truth.val)) | set(flat(truth.train)) <= set(labeled)
    assert torch.equal(truth.test.images, probe.test.images) and torch.equal(
        ssl.test.images, probe.test.images
    )
    assert (truth.mean, truth.std) == (ssl.mean, ssl.std)  # probed as it was pretrained
    for split in (truth.train, truth.val):  # labels follow the folders
        assert split.labels.tolist() == [v // 25 for v in split.images[:, 0, 0, 0].tolist()]


def test_a_tiny_table_on_a_scenario_builds_rows_with_every_truth(tmp_path, single_thread):
    folder = write_png_classes(tmp_path / "pngs", classes=8, per_class=12)
    result = build_table(scenario_table(folder, "optim.batch_size=16"), tmp_path / "t")
    assert result["failed"] == [] and result["finished"] == 2
    for row in read_jsonl(tmp_path / "t" / "table.jsonl"):
        assert set(row["truth"]) == {"knn_val", "knn_test", "linear_val", "linear_test"}
        assert all(0.0 <= v <= 1.0 for v in row["truth"].values())
