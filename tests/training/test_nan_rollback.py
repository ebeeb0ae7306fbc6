"""NaN / inf handling (selfnas.training.numerics): rollback to the last good checkpoint with a lower
LR, the stop policy, the retry limit, non-finite gradients, resume after a rollback, and the
collapse flag reaching the report."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from selfnas.config import build_config
from selfnas.errors import TrainingError
from selfnas.io import read_jsonl
from selfnas.rundir import RunDir
from selfnas.ssl.simsiam import SimSiam
from selfnas.training import trainer as trainer_mod
from selfnas.training.numerics import NanGuard, all_finite
from selfnas.training.schedule import warmup_cosine
from selfnas.training.trainer import Trainer

# TINY: 7 steps per epoch, 14 steps, metric lines every 2 steps, checkpoints every 3 and per epoch


def _fit(tmp_path, overrides, name="run", resume=False):
    cfg = build_config(overrides=overrides)
    run = RunDir.prepare(tmp_path / name, resume=resume)
    trainer = Trainer(cfg, run, quiet=True)
    return trainer, trainer.fit(resume=resume)


class Injector:
    """Makes the SSL loss NaN at the steps in ``steps`` (each once, or always with ``sticky``)."""

    def __init__(self, monkeypatch, steps, sticky=False, trainer_cls=Trainer):
        self.steps, self.sticky, self.done, self.step = set(steps), sticky, set(), -1
        real_hook, real_forward = trainer_cls.before_weight_step, SimSiam.forward
        injector = self

        def before_weight_step(trainer, step, epoch):
            injector.step = step
            return real_hook(trainer, step, epoch)

        def forward(model, x1, x2):
            out = real_forward(model, x1, x2)
            if injector.step in injector.steps and (injector.sticky or injector.step not in injector.done):
                injector.done.add(injector.step)
                out.loss = out.loss * float("nan")
            return out

        monkeypatch.setattr(trainer_cls, "before_weight_step", before_weight_step)
        monkeypatch.setattr(SimSiam, "forward", forward)


def _events(run):
    return [r for r in read_jsonl(run.metrics) if r.get("event") == "nan_rollback"]


def _numerics(run):
    with safe_open(str(run.checkpoint), framework="pt") as fh:
        return json.loads(fh.metadata()["extra"])


def _all_finite_file(path):
    return all(torch.isfinite(t).all() for t in load_file(str(path)).values() if t.is_floating_point())


def test_guard_state_and_backoff():
    guard = NanGuard("rollback", retries=2, backoff=0.5)
    arch = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    weights = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    assert guard.can_roll_back() and guard.note() == ""
    guard.back_off({"weights": weights, "arch": arch})
    assert guard.lr_scale == 0.5 and arch.param_groups[0]["lr"] == 5e-4
    assert weights.param_groups[0]["lr"] == 0.1  # the trainer scales the weight LR per step
    guard.back_off({"arch": arch})
    assert not guard.can_roll_back() and "2 rollback" in guard.note()
    again = NanGuard()
    again.load_state(json.loads(json.dumps(guard.state())))
    assert (again.lr_scale, again.rollbacks) == (0.25, 2)
    assert not NanGuard("stop").can_roll_back()
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    assert all_finite(net)
    net[1].running_var[0] = float("inf")  # a buffer counts too
    assert not all_finite(net)


def test_a_nan_rolls_back_lowers_the_lr_and_the_run_finishes(
    tmp_path, tiny_overrides, monkeypatch, single_thread
):
    Injector(monkeypatch, steps={4})  # step index 4: the check after step 6 sees it
    trainer, _ = _fit(tmp_path, tiny_overrides)
    run = trainer.run
    assert json.loads(run.status.read_text())["state"] == "finished"
    (event,) = _events(run)
    assert event == {"kind": "event", "event": "nan_rollback", "step": 3, "failed_step": 6,
                     "lr_scale": 0.5, "rollback": 1}  # fmt: skip
    assert _all_finite_file(run.model) and _numerics(run)["numerics"] == {"lr_scale": 0.5, "rollbacks": 1}
    # the replay after the rollback runs at half the scheduled LR, and every step is logged once
    plan = trainer.plan
    steps = [r for r in read_jsonl(run.metrics) if r["kind"] == "step"]
    assert [r["step"] for r in steps] == sorted({r["step"] for r in steps})
    for r in steps:
        scheduled = warmup_cosine(r["step"] - 1, plan.total_steps, plan.warmup_steps, plan.peak_lr)
        assert r["lr"] == (scheduled if r["step"] <= 3 else scheduled * 0.5)
        assert math.isfinite(r["loss"])
    status = json.loads(run.status.read_text())
    assert any("rolled back to step 3" in w for w in status["warnings"])
    from selfnas.report.write import write_report

    _, md = write_report(run.path)
    assert "rolled back to step 3" in md.read_text()


def test_resume_after_a_rollback_is_bit_identical(tmp_path, tiny_overrides, monkeypatch, single_thread):
    overrides = [*tiny_overrides, "run.checkpoint_every=2"]
    Injector(monkeypatch, steps={4})
    _fit(tmp_path, overrides, "full")

    Injector(monkeypatch, steps={4})
    original = trainer_mod.save_checkpoint

    def crash_after(path, model, optimizers, extra):
        original(path, model, optimizers, extra)
        if extra["step"] == 8:  # after the rollback: the checkpoint carries the LR scale
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_mod, "save_checkpoint", crash_after)
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path, overrides, "killed")
    monkeypatch.setattr(trainer_mod, "save_checkpoint", original)
    assert _numerics(RunDir(tmp_path / "killed"))["numerics"]["lr_scale"] == 0.5
    _fit(tmp_path, overrides, "killed", resume=True)

    full = load_file(str(tmp_path / "full" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert all(torch.equal(full[k], resumed[k]) for k in full)

    def records(name):
        return [(r.get("kind"), r["step"], r.get("loss"), r.get("lr"), r.get("lr_scale"))
                for r in read_jsonl(tmp_path / name / "metrics.jsonl")]  # fmt: skip

    assert records("full") == records("killed")


def test_policy_stop_fails_with_one_line_and_keeps_the_good_checkpoint(
    tmp_path, tiny_overrides, monkeypatch, single_thread
):
    Injector(monkeypatch, steps={4})
    with pytest.raises(TrainingError) as err:
        _fit(tmp_path, [*tiny_overrides, "run.nan_policy=stop"])
    message = str(err.value)
    assert "NaN" in message and "--resume" in message and "\n" not in message and "rollback" not in message
    run = RunDir(tmp_path / "run")
    assert json.loads(run.status.read_text())["state"] == "failed"
    assert not run.model.exists() and not _events(run)
    assert _numerics(run)["step"] == 3 and _all_finite_file(run.checkpoint)


def test_after_the_retries_the_run_stops(tmp_path, tiny_overrides, monkeypatch, single_thread):
    Injector(monkeypatch, steps=range(4, 100), sticky=True)  # diverges for good from step index 4
    with pytest.raises(TrainingError, match="after 2 rollback") as err:
        _fit(tmp_path, [*tiny_overrides, "run.nan_retries=2", "run.nan_lr_backoff=0.1"])
    assert "\n" not in str(err.value)
    run = RunDir(tmp_path / "run")
    assert [e["lr_scale"] for e in _events(run)] == pytest.approx([0.1, 0.01])
    assert json.loads(run.status.read_text())["state"] == "failed"
    assert _all_finite_file(run.checkpoint) and _numerics(run)["step"] == 3


def test_a_non_finite_gradient_is_caught_through_the_weights(
    tmp_path, tiny_overrides, monkeypatch, single_thread
):
    """The loss of step 9 is finite, its gradient is not: the weights it produces are caught by the
    check after step 9 (a checkpoint point), so they never reach a checkpoint."""
    state = {"step": -1, "fired": False}
    real_hook = Trainer.before_weight_step

    def before_weight_step(trainer, step, epoch):
        state["step"] = step
        if not hasattr(trainer, "_poisoned"):
            weight = next(trainer.model.projector.parameters())

            def poison(grad):
                if state["step"] == 8 and not state["fired"]:
                    state["fired"] = True
                    return grad * float("inf")
                return grad

            weight.register_hook(poison)
            trainer._poisoned = True
        return real_hook(trainer, step, epoch)

    monkeypatch.setattr(Trainer, "before_weight_step", before_weight_step)
    trainer, _ = _fit(tmp_path, tiny_overrides)
    (event,) = _events(trainer.run)
    assert state["fired"] and event["step"] == 7 and event["failed_step"] == 9
    assert _all_finite_file(trainer.run.model)


def test_a_nan_before_the_first_checkpoint_rolls_back_to_step_0(
    tmp_path, tiny_overrides, monkeypatch, single_thread
):
    Injector(monkeypatch, steps={0})
    trainer, _ = _fit(tmp_path, [*tiny_overrides, "run.checkpoint_every=100", "optim.epochs=1"])
    (event,) = _events(trainer.run)
    assert event["step"] == 0 and event["failed_step"] == 2
    assert json.loads(trainer.run.status.read_text())["state"] == "finished"


def test_collapse_is_flagged_in_metrics_and_the_report(tmp_path, tiny_overrides, monkeypatch, single_thread):
    monkeypatch.setattr(trainer_mod, "normalized_std", lambda z: 0.0)
    trainer, _ = _fit(tmp_path, [*tiny_overrides, "optim.epochs=1"])
    assert all(r["collapsed"] for r in read_jsonl(trainer.run.metrics) if r["kind"] == "epoch")
    from selfnas.report.write import write_report

    html, md = write_report(trainer.run.path)
    assert "representation collapse suspected" in md.read_text()
    assert "representation collapse suspected" in html.read_text()


def test_a_darts_search_rolls_back_its_architecture_lr_too(
    tmp_path, tiny_overrides, monkeypatch, single_thread
):
    from selfnas.nas.strategies.darts import HeadSearchTrainer

    # the architecture step's loss of step index 4 is NaN, and so are the alphas after it
    Injector(monkeypatch, steps={4}, trainer_cls=HeadSearchTrainer)
    cfg = build_config(overrides=[*tiny_overrides, "search.projector_layers=2", "search.predictor_layers=2"])
    trainer = HeadSearchTrainer(cfg, RunDir.prepare(tmp_path / "search"), quiet=True)
    trainer.fit()
    run = trainer.run
    assert [e["step"] for e in _events(run)] == [3] and (run.path / "genotype.json").exists()
    with safe_open(str(run.checkpoint), framework="pt") as fh:
        groups = json.loads(fh.metadata()["optim_groups"])
    assert groups["arch"][0]["lr"] == cfg.search.arch_lr * 0.5
    assert _all_finite_file(run.model)
