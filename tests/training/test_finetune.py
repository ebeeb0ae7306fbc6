"""Fine-tuning a pretrained backbone on few labels: the class-balanced label subset, the run it
writes (val selects the epoch, test is reported), and one-line errors for bad inputs."""

import hashlib
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import selfnas
from selfnas.config import build_config
from selfnas.data.label_subset import label_subset
from selfnas.data.types import ImageSet
from selfnas.errors import ConfigError, DatasetError, RunDirError
from selfnas.io import read_jsonl
from selfnas.training.finetune import finetune_config, finetune_data
from selfnas.training.supervised import labeled_splits
from tests.conftest import TINY


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    pass


def _images(counts: list[int]) -> ImageSet:
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(5))]
    classes = tuple(f"c{k}" for k in range(len(counts)))
    return ImageSet(torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8), labels, classes)


# -- the label subset ------------------------------------------------------------------------


def test_a_share_keeps_the_same_count_of_every_class_seeded_and_recorded():
    train = _images([300, 300, 300, 300])
    subset = label_subset(train, "10%", seed=3)
    assert subset.per_class == {"c0": 30, "c1": 30, "c2": 30, "c3": 30}
    assert torch.bincount(train.labels[subset.index]).tolist() == [30, 30, 30, 30]
    assert subset.index.unique().numel() == 120 and torch.equal(subset.index, subset.index.sort().values)
    again, other = label_subset(train, "10%", seed=3), label_subset(train, "10%", seed=4)
    assert torch.equal(again.index, subset.index) and not torch.equal(other.index, subset.index)
    record = subset.record()
    assert record["sha256"] == hashlib.sha256(subset.index.numpy().tobytes()).hexdigest()
    assert record["sha256"] != other.record()["sha256"]
    assert (record["budget"], record["seed"], record["n"], record["of"]) == ("10%", 3, 120, 1200)
    one = label_subset(train, "1%", seed=3)
    assert one.per_class == {f"c{k}": 3 for k in range(4)}
    assert set(one.index.tolist()) <= set(subset.index.tolist())  # nested in the larger budget


def test_an_int_is_labels_per_class_and_100_percent_is_everything():
    train = _images([50, 20, 35])
    assert label_subset(train, 7, seed=0).per_class == {"c0": 7, "c1": 7, "c2": 7}
    whole = label_subset(train, "100%", seed=0)
    assert torch.equal(whole.index, torch.arange(105)) and whole.per_class == {"c0": 50, "c1": 20, "c2": 35}
    capped = label_subset(train, "60%", seed=0)  # 21 per class asked; c1 has 20: all of it
    assert capped.per_class == {"c0": 21, "c1": 20, "c2": 21}
    with pytest.raises(DatasetError, match="at most 20 labels per class"):
        label_subset(train, 21, seed=0)
    with pytest.raises(DatasetError, match="needs labels"):
        label_subset(ImageSet(train.images), "10%", seed=0)


@pytest.mark.parametrize("labels", ["0%", "150%", "-5%", "ten%", "1e1%", "0", 0, -3, True, 0.1])
def test_bad_label_budgets_are_one_line_config_errors(labels):
    with pytest.raises(ConfigError, match="finetune.labels") as info:
        finetune_config(build_config(), "runs/x", labels=labels)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "labels, stored", [("1%", "1%"), ("10%", "10%"), ("100%", "100%"), ("0.5%", "0.5%"), (25, 25), ("25", 25)]
)
def test_good_label_budgets_are_kept(labels, stored):
    config = finetune_config(build_config(), "runs/x", labels=labels)
    assert config.finetune is not None and config.finetune.labels == stored and config.search is None


# -- a tiny fine-tuning run --------------------------------------------------------------------

FINETUNE = ["finetune.epochs=4", "finetune.batch_size=32", "finetune.lr=0.5"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny SimSiam run on the synthetic data, and a fine-tuning of it on all its labels."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("finetune")
    ssl = build_config(overrides=[*TINY, "optim.epochs=1", "run.eval_at_end=false", "run.knn_every=0"])
    selfnas.train(ssl, out=path / "ssl", quiet=True)
    result = selfnas.finetune(path / "ssl", labels="100%", out=path / "ft", quiet=True, overrides=FINETUNE)
    torch.set_num_threads(threads)
    return path, result


def test_finetuning_writes_a_run_directory_with_labels_val_and_test(runs):
    path, result = runs
    run = path / "ft"
    for name in ("config.yaml", "provenance.json", "status.json", "metrics.jsonl", "model.safetensors",
                 "eval.json", "label_subset.json", "checkpoints/last.safetensors"):  # fmt: skip
        assert (run / name).is_file(), name
    section = json.loads((run / "eval.json").read_text())["finetune"]
    assert result["finetune"] == section
    assert section["labels"]["budget"] == "100%" and section["labels"]["n"] == 461
    assert 0 <= section["val"] <= 1 and 0 <= section["test"] <= 1
    assert json.loads((run / "status.json").read_text())["state"] == "finished"


def test_finetuning_trains_the_backbone_and_beats_the_frozen_linear_probe(runs):
    path, result = runs
    before, after = (
        load_file(str(path / "ssl" / "model.safetensors")),
        load_file(str(path / "ft" / "model.safetensors")),
    )
    convs = [k for k in after if k.startswith("backbone.") and after[k].ndim == 4]
    assert convs and all(not torch.equal(before[k], after[k]) for k in convs)  # end to end, every conv moved
    probe = selfnas.evaluate(path / "ssl", write=False, quiet=True)["linear"]
    assert result["finetune"]["val"] > probe["val"] and result["finetune"]["test"] > probe["test"]


def test_validation_selects_the_epoch_and_test_is_measured_on_its_weights(runs):
    path, result = runs
    run = path / "ft"
    epochs = [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "epoch"]
    assert len(epochs) == 4
    best = max(epochs, key=lambda r: (r["val_acc"], -r["epoch"]))  # the first epoch of the best val
    section = result["finetune"]
    assert section["epoch"] == best["epoch"] and section["val"] == best["val_acc"]
    kept = load_file(str(run / "model.safetensors"))
    chosen = load_file(str(run / "checkpoints" / "best.safetensors"))
    assert all(torch.equal(kept[k], chosen[k]) for k in kept)


def test_the_label_subset_is_the_recorded_class_balanced_one(runs):
    path, _ = runs
    config = finetune_config(
        build_config(overrides=TINY), path / "ssl", labels="10%", overrides=["finetune.label_seed=7"]
    )
    data, subset = finetune_data(config)
    assert subset.per_class == {f"pattern{k}": 12 for k in range(4)}  # round(0.1 * 461 / 4)
    assert torch.bincount(data.train.labels).tolist() == [12, 12, 12, 12] and subset.seed == 7
    recorded = json.loads((path / "ft" / "label_subset.json").read_text())
    counts = torch.bincount(labeled_splits(config).train.labels).tolist()  # the whole train split's
    assert recorded["index"] == list(range(461)) and list(recorded["per_class"].values()) == counts


def test_a_small_budget_run_records_its_subset(runs, tmp_path):
    path, _ = runs
    result = selfnas.finetune(
        path / "ssl",
        labels=5,
        out=tmp_path / "five",
        quiet=True,
        overrides=["finetune.epochs=1", "finetune.batch_size=4"],
    )
    labels = result["finetune"]["labels"]
    assert labels["per_class"] == {f"pattern{k}": 5 for k in range(4)} and labels["n"] == 20
    stored = json.loads((tmp_path / "five" / "label_subset.json").read_text())
    index = torch.tensor(stored["index"])
    assert hashlib.sha256(index.numpy().tobytes()).hexdigest() == labels["sha256"] == stored["sha256"]
    assert result["n_train"] == 20


def test_bad_finetuning_inputs_are_one_line_errors(runs, tmp_path):
    import numpy as np

    path, _ = runs
    unfinished = tmp_path / "unfinished"
    shutil.copytree(path / "ssl", unfinished)
    (unfinished / "model.safetensors").unlink()
    np.save(tmp_path / "images.npy", np.zeros((80, 16, 16, 3), dtype=np.uint8))
    cases = [
        (dict(run_dir=path / "ssl", labels="0%"), ConfigError, "finetune.labels"),
        (dict(run_dir=path / "ssl", labels="150%"), ConfigError, "finetune.labels"),
        (dict(run_dir=unfinished), RunDirError, "no model.safetensors"),
        (dict(run_dir=tmp_path), RunDirError, "not a selfnas run directory"),
        (dict(run_dir=path / "ssl", data=f"npy:{tmp_path / 'images.npy'}"), DatasetError, "no labels"),
    ]
    for kwargs, error, says in cases:
        with pytest.raises(error, match=says) as info:
            selfnas.finetune(out=tmp_path / "out", quiet=True, **kwargs)
        assert "\n" not in str(info.value)
        assert not (tmp_path / "out").exists()  # nothing left behind


def test_a_killed_finetuning_resumes_to_the_same_result(runs, tmp_path, monkeypatch):
    from selfnas.training import supervised as supervised_mod

    path, _ = runs
    small = ["finetune.epochs=3", "finetune.batch_size=4", "run.checkpoint_every=3"]

    def tune(name, resume=False, **kwargs):
        return selfnas.finetune(
            path / "ssl", out=tmp_path / name, resume=resume, quiet=True, overrides=small, **kwargs
        )

    full = tune("full", labels=5)
    epochs = [r for r in read_jsonl(tmp_path / "full" / "metrics.jsonl") if r["kind"] == "epoch"]
    best = max(epochs, key=lambda r: (r["val_acc"], -r["epoch"]))
    assert best["epoch"] < 3  # on this toy the best val is not the last epoch: the selection matters
    assert (full["finetune"]["epoch"], full["finetune"]["val"]) == (best["epoch"], best["val_acc"])
    original = supervised_mod.save_checkpoint

    def crash_after(file, model, optimizers, extra):
        original(file, model, optimizers, extra)
        if extra["step"] == 6:  # mid epoch 2, after epoch 1 chose its weights
            raise KeyboardInterrupt

    monkeypatch.setattr(supervised_mod, "save_checkpoint", crash_after)
    with pytest.raises(KeyboardInterrupt):
        tune("killed", labels=5)
    monkeypatch.setattr(supervised_mod, "save_checkpoint", original)
    with pytest.raises(ConfigError, match="labels 5"):
        tune("killed", resume=True, labels="10%")
    resumed = tune("killed", resume=True)
    assert {k: v for k, v in resumed.items() if k != "run_dir"} == {
        k: v for k, v in full.items() if k != "run_dir"
    }
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("full", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
