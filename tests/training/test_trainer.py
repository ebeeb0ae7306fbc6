import json
import math

import pytest
import torch
from safetensors.torch import load_file

from selfnas.config import build_config
from selfnas.errors import TrainingError
from selfnas.eval.scores import normalized_std
from selfnas.io import read_jsonl
from selfnas.rundir import RunDir
from selfnas.training import trainer as trainer_mod
from selfnas.training.monitor import collapse_ratio
from selfnas.training.trainer import Trainer


def _fit(tmp_path, overrides, name="run", resume=False):
    cfg = build_config(overrides=overrides)
    run = RunDir.prepare(tmp_path / name, resume=resume)
    trainer = Trainer(cfg, run, quiet=True)
    return trainer, trainer.fit(resume=resume)


@pytest.mark.parametrize("method", ["simsiam", "simclr", "moco", "byol"])
def test_every_method_trains_and_writes_the_run_dir(tmp_path, tiny_overrides, method):
    extra = ["method.hparams={queue_size: 256}"] if method == "moco" else []
    trainer, last = _fit(tmp_path, [*tiny_overrides, f"method.name={method}", *extra])
    run = trainer.run
    for path in (run.config, run.provenance, run.status, run.metrics, run.checkpoint, run.model):
        assert path.exists(), path
    assert json.loads(run.status.read_text())["state"] == "finished"
    records = read_jsonl(run.metrics)
    steps = [r for r in records if r["kind"] == "step"]
    assert steps and all(math.isfinite(r["loss"]) for r in steps)
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert len(epochs) == 2 and "knn_val" in epochs[-1]
    assert last["step"] == trainer.plan.total_steps


def test_deterministic_under_seed(tmp_path, tiny_overrides):
    _, a = _fit(tmp_path, tiny_overrides, "a")
    _, b = _fit(tmp_path, tiny_overrides, "b")
    wa, wb = (
        load_file(str(tmp_path / "a" / "model.safetensors")),
        load_file(str(tmp_path / "b" / "model.safetensors")),
    )
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["loss"] == b["loss"]
    _, c = _fit(tmp_path, [*tiny_overrides, "run.seed=1"], "c")
    assert c["loss"] != a["loss"]


def test_interrupted_run_resumes_to_the_same_result(tmp_path, tiny_overrides, monkeypatch):
    overrides = [*tiny_overrides, "method.name=byol"]
    _fit(tmp_path, overrides, "full")

    # crash right after the checkpoint of step 6 (of 16): the step-7 work is lost
    original = trainer_mod.save_checkpoint

    def crash_after(path, model, optimizer, extra):
        original(path, model, optimizer, extra)
        if extra["step"] == 6:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_mod, "save_checkpoint", crash_after)
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path, overrides, "killed")
    monkeypatch.setattr(trainer_mod, "save_checkpoint", original)
    assert json.loads((tmp_path / "killed" / "status.json").read_text())["state"] == "interrupted"
    _fit(tmp_path, overrides, "killed", resume=True)

    full = load_file(str(tmp_path / "full" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert full.keys() == resumed.keys()
    assert all(torch.equal(full[k], resumed[k]) for k in full)

    def losses(name):
        return [
            (r["step"], r["loss"], r.get("knn_val")) for r in read_jsonl(tmp_path / name / "metrics.jsonl")
        ]

    assert losses("full") == losses("killed")


def test_nan_loss_stops_with_a_message_and_keeps_the_checkpoint(tmp_path, tiny_overrides, monkeypatch):
    from selfnas.ssl.simsiam import SimSiam

    real_forward = SimSiam.forward
    calls = {"n": 0}

    def nan_after_four(self, x1, x2):
        out = real_forward(self, x1, x2)
        calls["n"] += 1
        if calls["n"] > 4:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(SimSiam, "forward", nan_after_four)
    with pytest.raises(TrainingError, match="NaN") as err:
        _fit(tmp_path, tiny_overrides, "nan")
    assert "--resume" in str(err.value)
    run = RunDir(tmp_path / "nan")
    assert json.loads(run.status.read_text())["state"] == "failed"
    assert run.checkpoint.exists() and not run.model.exists()
    # the kept checkpoint holds finite weights
    assert all(
        torch.isfinite(t).all() for t in load_file(str(run.checkpoint)).values() if t.is_floating_point()
    )


def test_collapse_is_measured_warned_and_recorded(tmp_path, tiny_overrides, monkeypatch):
    assert normalized_std(torch.ones(32, 16)) == 0.0
    healthy = normalized_std(torch.randn(4096, 16))
    assert collapse_ratio(healthy, 16) == pytest.approx(1.0, abs=0.05)

    monkeypatch.setattr(trainer_mod, "normalized_std", lambda z: 0.0)
    trainer, _ = _fit(tmp_path, tiny_overrides, "collapsed")
    epochs = [r for r in read_jsonl(trainer.run.metrics) if r["kind"] == "epoch"]
    assert all(r["collapsed"] for r in epochs)
    status = json.loads(trainer.run.status.read_text())
    assert status["collapsed"] and "collapse" in status["warnings"][0]
