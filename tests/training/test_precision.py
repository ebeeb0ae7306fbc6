"""``run.precision`` where the model runs: under ``bf16`` the convolutions and matmuls of the SSL
weight step, the kNN monitor, the DARTS architecture step, supervised training and the evaluation's
features compute in bf16 on the CPU; under ``fp32`` none does. The loss, the saved weights, BatchNorm
statistics and the optimizer state stay fp32 either way, and the precision is recorded in
provenance.json, eval.json and the report's setup line.

The CPU here may lack native bf16: the capability check is patched to say yes (autocast computes
the same bf16 either way, only slower without it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from selfnas import device, evaluation
from selfnas.config import build_config
from selfnas.nas.strategies.darts import HeadSearchTrainer
from selfnas.report.facts import load_facts
from selfnas.report.summary import setup_line
from selfnas.rundir import RunDir
from selfnas.training.supervised import SupervisedTrainer
from selfnas.training.trainer import Trainer

DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16}


@pytest.fixture(autouse=True)
def _native_bf16(monkeypatch, single_thread):
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)


class Watch:
    """The dtypes that the convolutions and linear layers of watched modules output, per phase."""

    def __init__(self) -> None:
        self.phase = "train"
        self.seen: dict[str, set[torch.dtype]] = {}

    def module(self, module: nn.Module) -> nn.Module:
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.register_forward_hook(self._hook)
        return module

    def _hook(self, module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        self.seen.setdefault(self.phase, set()).add(output.dtype)

    @contextmanager
    def during(self, phase: str) -> Iterator[None]:
        before, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = before


def _config(tiny_overrides, precision, *extra):
    return build_config(overrides=[*tiny_overrides, f"run.precision={precision}", "optim.epochs=1", *extra])


def _assert_fp32_state(run: RunDir, model: nn.Module, optimizers: dict) -> None:
    saved = load_file(run.model)
    assert saved and {t.dtype for t in saved.values() if t.is_floating_point()} == {torch.float32}
    assert {t.dtype for t in model.state_dict().values() if t.is_floating_point()} == {torch.float32}
    for opt in optimizers.values():
        states = [t for state in opt.state.values() for t in state.values() if torch.is_tensor(t)]
        assert states and {t.dtype for t in states if t.is_floating_point()} == {torch.float32}


@pytest.mark.parametrize(("asked", "precision"), [("fp32", "fp32"), ("auto", "bf16")])
def test_ssl_training_and_evaluation_compute_in_the_precision_asked(
    tmp_path, tiny_overrides, monkeypatch, asked, precision
) -> None:
    run = RunDir.prepare(tmp_path / "run")
    trainer = Trainer(_config(tiny_overrides, asked, "run.knn_every=1"), run, quiet=True)
    watch = Watch()
    watch.module(trainer.model)
    losses = []
    step = trainer.step_fn

    def recorded(x1, x2):
        out = step(x1, x2)
        losses.append(out.loss.dtype)
        return out

    trainer.step_fn = recorded
    monitor = trainer._knn_monitor
    monkeypatch.setattr(trainer, "_knn_monitor", lambda progress: _during(watch, "knn", monitor, progress))
    trainer.fit()
    assert trainer.precision == precision
    assert set(losses) == {torch.float32}  # the loss is computed in fp32 under autocast too
    _assert_fp32_state(run, trainer.model, trainer.optimizers)
    load = evaluation.load_backbone
    monkeypatch.setattr(evaluation, "load_backbone", lambda *a: watch.module(load(*a)))
    # evaluated on a CPU without bf16, where auto means fp32: measured as it trained all the same
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: False)
    with watch.during("eval"):
        result = evaluation.evaluate(run.path, linear=False, quiet=True)
    assert watch.seen == {"train": {DTYPE[precision]}, "knn": {DTYPE[precision]}, "eval": {DTYPE[precision]}}
    assert json.loads(run.provenance.read_text())["precision"] == precision
    assert result["precision"] == precision
    line = setup_line(load_facts(run.path))
    assert line is not None and line.endswith(", bf16 autocast") == (precision == "bf16")


def _during(watch: Watch, phase: str, fn, *args):
    with watch.during(phase):
        return fn(*args)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_darts_architecture_step_computes_in_the_precision_asked(
    tmp_path, tiny_overrides, precision
) -> None:
    config = _config(tiny_overrides, precision, "run.knn_every=0", "run.eval_at_end=false")
    trainer = HeadSearchTrainer(config, RunDir.prepare(tmp_path / "run"), quiet=True)
    watch = Watch()
    watch.module(trainer.model)
    arch_step = trainer.before_weight_step
    trainer.before_weight_step = lambda step, epoch: _during(watch, "arch", arch_step, step, epoch)
    alphas = [a.detach().clone() for a in trainer.arch_parameters()]
    trainer.fit()
    assert watch.seen == {"arch": {DTYPE[precision]}, "train": {DTYPE[precision]}}
    assert all(not torch.equal(a, b) for a, b in zip(alphas, trainer.arch_parameters(), strict=True))
    assert {a.dtype for a in trainer.arch_parameters()} == {torch.float32}
    _assert_fp32_state(trainer.run, trainer.model, trainer.optimizers)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_supervised_training_computes_in_the_precision_asked(tmp_path, tiny_overrides, precision) -> None:
    config = _config(tiny_overrides, precision, "supervised.epochs=1", "supervised.batch_size=64")
    run = RunDir.prepare(tmp_path / "run")
    trainer = SupervisedTrainer(config, run, quiet=True)
    watch = Watch()
    watch.module(trainer.model)
    result = trainer.fit()
    assert watch.seen == {"train": {DTYPE[precision]}}  # steps, precise BN and the accuracies
    assert 0.0 <= result["supervised"]["test"] <= 1.0
    _assert_fp32_state(run, trainer.model, trainer.optimizers)
