"""Supervised training with labels (the DARTS / CSNAS evaluation phase): the augmentation, the loss,
the drop-path schedule, a tiny run's directory, and a killed run resuming to the same result."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import selfnas
from selfnas.config import DARTS_CIFAR_SUPERVISED, SupervisedConfig, build_config
from selfnas.data.supervised_augment import SupervisedAugment, cutout_mask, random_crop_flip
from selfnas.errors import ConfigError, DatasetError, RunDirError
from selfnas.io import read_jsonl
from selfnas.models.cells import CellNetwork
from selfnas.models.published_genotypes import PUBLISHED_GENOTYPES
from selfnas.training import supervised as supervised_mod
from selfnas.training.classifier import Classifier, supervised_loss
from selfnas.training.supervised import drop_path_at

V2 = json.dumps(PUBLISHED_GENOTYPES.get("DARTS_V2").to_json())
#: DARTS_V2 cells at a toy size on the synthetic data (16 px, 4 classes), every DARTS aid on
TINY_CELLS = [
    "data.name=synthetic",
    "data.train_limit=256",
    "model.backbone=darts_cells",
    f"model.backbone_kwargs={{width: 4, layers: 5, genotype: {V2}}}",
    "supervised.epochs=2",
    "supervised.batch_size=64",
    "supervised.cutout=4",
    "supervised.drop_path=0.3",
    "supervised.auxiliary=true",
    "supervised.label_smoothing=0.1",
    "run.device=cpu",
    "run.threads=1",
    "run.log_every=2",
    "run.checkpoint_every=3",
]


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    pass


# -- augmentation ----------------------------------------------------------------------------


def test_random_crop_is_a_shift_of_the_zero_padded_image():
    x = torch.rand(64, 3, 8, 8)
    out = random_crop_flip(x, 2, False, torch.Generator().manual_seed(0))
    padded = F.pad(x, (2, 2, 2, 2))
    shifts = set()
    for i in range(len(x)):
        found = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 8])
        ]
        assert found, i
        shifts.add(found[0])
    assert len(shifts) > 10  # offsets spread over the 5 x 5 choices


def test_flip_mirrors_about_half_the_images():
    x = torch.rand(400, 1, 6, 6)
    out = random_crop_flip(x, 0, True, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, xi.flip(2)) for o, xi in zip(out, x, strict=True)])
    same = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x, strict=True)])
    assert (flipped | same).all() and 0.4 < flipped.float().mean() < 0.6


def test_cutout_zeroes_one_length_by_length_square_clipped_at_the_borders():
    length, side = 4, 16
    mask = cutout_mask(2000, side, side, length, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert mask.shape == (2000, 1, side, side)
    full = 0
    for m in mask[:, 0]:
        rows = (m == 0).any(dim=1).nonzero().flatten()
        cols = (m == 0).any(dim=0).nonzero().flatten()
        assert len(rows) and len(cols) and len(rows) <= length and len(cols) <= length
        assert (rows.diff() == 1).all() and (cols.diff() == 1).all()  # contiguous
        assert int((m == 0).sum()) == len(rows) * len(cols)  # a rectangle: the square, clipped
        clipped = rows[0] == 0 or rows[-1] == side - 1 or cols[0] == 0 or cols[-1] == side - 1
        assert len(rows) == len(cols) == length or clipped
        full += int((m == 0).sum()) == length * length
    assert 0.45 < full / 2000 < 0.7  # centre 2..13 on both axes: (12 / 16)^2 = 0.56


def test_the_augment_normalises_and_cuts_out_after_normalising():
    images = torch.full((50, 1, 16, 16), 200, dtype=torch.uint8)
    aug = SupervisedAugment((0.2,), (0.5,), padding=0, flip=False, cutout=6)
    x = aug(images, torch.Generator().manual_seed(0))
    value = (200 / 255 - 0.2) / 0.5
    zero = x == 0
    assert torch.allclose(x[~zero], torch.tensor(value))  # normalised, then cut out to 0
    sizes = [int(z.sum()) for z in zero]
    assert all(0 < n <= 36 for n in sizes) and max(sizes) == 36  # one 6 x 6 square each, clipped or whole
    assert torch.allclose(aug.normalize(images), torch.full((50, 1, 16, 16), value))


# -- loss, auxiliary head, drop-path schedule -----------------------------------------------


def test_label_smoothing_loss_is_the_formula():
    torch.manual_seed(0)
    logits, labels, eps = torch.randn(32, 5), torch.randint(0, 5, (32,)), 0.1
    log_p = logits.log_softmax(1)
    nll = -log_p[torch.arange(32), labels].mean()
    expected = (1 - eps) * nll + eps * (-log_p.mean(1)).mean()
    assert torch.allclose(supervised_loss(logits, None, labels, eps), expected, atol=1e-6)
    assert torch.allclose(supervised_loss(logits, None, labels, 0.0), nll, atol=1e-6)


def test_the_auxiliary_head_adds_its_weighted_loss_in_training_only():
    torch.manual_seed(0)
    model = Classifier(CellNetwork(PUBLISHED_GENOTYPES.get("DARTS_V2"), 3, C=2, layers=3), 4, auxiliary=True)
    x, y = torch.randn(6, 3, 16, 16), torch.randint(0, 4, (6,))
    model.train()
    logits, aux = model(x)
    assert aux is not None
    expected = F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)
    assert torch.allclose(supervised_loss(logits, aux, y, 0.0, 0.4), expected)
    assert not torch.allclose(supervised_loss(logits, aux, y, 0.0, 0.4), F.cross_entropy(logits, y))
    model.eval()
    logits, aux = model(x)
    assert aux is None and torch.allclose(
        supervised_loss(logits, aux, y, 0.0, 0.4), F.cross_entropy(logits, y)
    )


def test_drop_path_rises_linearly_from_zero():
    assert [drop_path_at(0.2, s, 10) for s in (0, 5, 10)] == [0.0, 0.1, 0.2]


# -- config --------------------------------------------------------------------------------


def test_darts_settings_are_a_valid_section_and_the_defaults_are_small():
    darts = SupervisedConfig(**DARTS_CIFAR_SUPERVISED)
    assert (darts.epochs, darts.cutout, darts.drop_path, darts.auxiliary) == (600, 16, 0.2, True)
    small = SupervisedConfig()
    assert small.epochs <= 10 and (small.cutout, small.drop_path, small.auxiliary) == (0, 0.0, False)
    cfg = build_config(overrides=["supervised.cutout=16", "supervised.drop_path=0.2"])
    assert cfg.supervised is not None and cfg.supervised.cutout == 16
    for bad in ("supervised.drop_path=1", "supervised.label_smoothing=-0.1", "supervised.cutout=-1"):
        with pytest.raises(ConfigError, match="supervised"):
            build_config(overrides=[bad])


@pytest.mark.parametrize(
    "extra, error, says",
    [
        (["supervised.drop_path=0.2"], ConfigError, "drop-path needs the darts_cells backbone"),
        (["supervised.auxiliary=true"], ConfigError, "auxiliary head needs the darts_cells backbone"),
        (["supervised.batch_size=1024"], ConfigError, "lower supervised.batch_size"),
    ],
)
def test_bad_supervised_settings_are_one_line_errors(tmp_path, extra, error, says):
    overrides = [
        "data.name=synthetic",
        "model.backbone_kwargs={width: 4, depths: [1]}",
        "run.device=cpu",
        *extra,
    ]
    with pytest.raises(error, match=says) as info:
        selfnas.train_supervised(build_config(overrides=overrides), out=tmp_path / "run", quiet=True)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()  # nothing left behind


def test_unlabeled_data_is_a_one_line_error(tmp_path):
    import numpy as np

    np.save(tmp_path / "images.npy", np.zeros((80, 16, 16), dtype=np.uint8))
    config = build_config(overrides=[f"data.name=npy:{tmp_path / 'images.npy'}", "run.device=cpu"])
    with pytest.raises(DatasetError, match="no labels") as info:
        selfnas.train_supervised(config, out=tmp_path / "run", quiet=True)
    assert "\n" not in str(info.value) and not (tmp_path / "run").exists()


# -- a tiny run and its resume ------------------------------------------------------------


def _train(tmp_path, name, overrides=TINY_CELLS, resume=False):
    config = None if resume else build_config(overrides=overrides)
    return selfnas.train_supervised(config, out=tmp_path / name, resume=resume, quiet=True)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("supervised")
    result = _train(path, "full")
    torch.set_num_threads(threads)
    return path, result


def test_a_tiny_supervised_run_writes_the_run_directory(full_run):
    path, result = full_run
    run = path / "full"
    for name in ("config.yaml", "provenance.json", "status.json", "metrics.jsonl", "model.safetensors",
                 "eval.json", "checkpoints/last.safetensors"):  # fmt: skip
        assert (run / name).is_file(), name
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    evaluation = json.loads((run / "eval.json").read_text())
    section = evaluation["supervised"]
    assert 0 <= section["val"] <= 1 and 0 <= section["test"] <= 1
    assert evaluation["n_held_out"] == {"val": 51, "test": 128} and evaluation["n_train"] == 256
    assert section["auxiliary_parameters"] > 0 and section["steps"] == 8  # 256 // 64 steps x 2 epochs
    assert result["supervised"] == section and result["run_dir"] == str(run)
    records = read_jsonl(run / "metrics.jsonl")
    steps = [r for r in records if r["kind"] == "step"]
    assert all(math.isfinite(r["loss"]) for r in steps)
    assert [r["drop_path"] for r in steps] == [pytest.approx(0.3 * (r["step"] - 1) / 8) for r in steps]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]
    weights = load_file(str(run / "model.safetensors"))
    assert any(k.startswith("auxiliary.") for k in weights) and "classifier.weight" in weights
    config = build_config(base=__import__("yaml").safe_load((run / "config.yaml").read_text()))
    assert config.supervised is not None and config.supervised.drop_path == 0.3


def test_a_killed_run_resumes_to_the_same_result(full_run, monkeypatch):
    path, _ = full_run
    original = supervised_mod.save_checkpoint

    def crash_after(file, model, optimizers, extra):
        original(file, model, optimizers, extra)
        if extra["step"] == 3:  # mid epoch 1: the step-4 work, its drop-path and cutout draws are lost
            raise KeyboardInterrupt

    monkeypatch.setattr(supervised_mod, "save_checkpoint", crash_after)
    with pytest.raises(KeyboardInterrupt):
        _train(path, "killed")
    monkeypatch.setattr(supervised_mod, "save_checkpoint", original)
    assert json.loads((path / "killed" / "status.json").read_text())["state"] == "interrupted"
    _train(path, "killed", resume=True)
    full = load_file(str(path / "full" / "model.safetensors"))
    resumed = load_file(str(path / "killed" / "model.safetensors"))
    assert full.keys() == resumed.keys() and all(torch.equal(full[k], resumed[k]) for k in full)
    a, b = (json.loads((path / n / "eval.json").read_text()) for n in ("full", "killed"))
    assert a == b

    def lines(name):
        return [
            {k: v for k, v in r.items() if k != "images_per_s"}
            for r in read_jsonl(path / name / "metrics.jsonl")
        ]

    assert lines("full") == lines("killed")
    with pytest.raises(RunDirError, match="already finished"):
        _train(path, "killed", resume=True)


# -- precise BatchNorm: eval mode measures what was trained --------------------------------------


def _stem_input_stats(path, name, overrides=TINY_CELLS):
    """The run's saved stem BatchNorm statistics, and the mean and variance of that BatchNorm's input
    over every clean training image (256 images, 4 equal batches of 64: the precise average)."""
    from selfnas.rundir import RunDir
    from selfnas.training.checkpoint import load_weights

    trainer = supervised_mod.SupervisedTrainer(build_config(overrides=overrides), RunDir(path / "probe"))
    load_weights(path / name / "model.safetensors", trainer.model)
    bn = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    seen = []
    handle = bn.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    trainer.model.eval()
    with torch.no_grad():
        trainer.model(trainer.augment.normalize(trainer.images))
    handle.remove()
    x = seen[0].float().transpose(0, 1).flatten(1)  # C x (N H W)
    return bn.running_mean, bn.running_var, x.mean(1), x.var(1)


def test_the_saved_batchnorm_statistics_are_the_average_over_the_training_images(full_run):
    path, _ = full_run
    assert len(supervised_mod.labeled_splits(build_config(overrides=TINY_CELLS)).train) == 256
    running_mean, running_var, mean, var = _stem_input_stats(path, "full")
    assert torch.allclose(running_mean, mean, atol=1e-4, rtol=1e-4)
    assert torch.allclose(running_var, var, rtol=1e-2)  # per-batch unbiased variances, averaged
    epochs = [r for r in read_jsonl(path / "full" / "metrics.jsonl") if r["kind"] == "epoch"]
    assert [r["precise_bn_images"] for r in epochs] == [256, 256]


def test_without_precise_bn_the_statistics_lag_behind(full_run):
    path, _ = full_run
    _train(path, "ema", overrides=[*TINY_CELLS, "supervised.precise_bn=false"])
    running_mean, _, mean, _ = _stem_input_stats(path, "ema")
    # 8 steps of momentum 0.1: 0.9^8 = 43% of the initial zero is still in the running mean
    assert (running_mean - mean).norm() > 0.2 * mean.norm()
