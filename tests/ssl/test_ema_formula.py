"""The momentum encoders (MoCo's key encoder, BYOL's target) follow the EMA formula exactly.

After every optimizer step of a real training run, each target weight must equal
``m * old_target + (1 - m) * online`` with the online weights just stepped and ``m`` the momentum
of that step: MoCo's is constant; BYOL's ramps ``m_k = 1 - (1 - m_0) (cos(pi k / K) + 1) / 2`` after
step k of K (Grill et al., 2020, section 3.2). Buffers (BatchNorm statistics) and architecture
parameters (``*alpha``, in a search) are copied from the online network, as
:class:`selfnas.ssl.base.MomentumTarget` states. The target is matched to the online network by
parameter name, not by the order the code zips them in.
"""

from __future__ import annotations

import math

import pytest
import torch

from selfnas.config import build_config
from selfnas.nas.strategies.darts import HeadSearchTrainer
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer

BASE = 0.9  # far from 1 so that a wrong momentum moves the target visibly


def _online(model: torch.nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """The online backbone + projector as the target copies them: ``0.*`` backbone, ``1.*`` projector."""
    params, buffers = {}, {}
    for prefix, module in (("0.", model.backbone), ("1.", model.projector)):
        params |= {prefix + n: p for n, p in module.named_parameters()}
        buffers |= {prefix + n: b for n, b in module.named_buffers()}
    return {"params": params, "buffers": buffers}


def _record_steps(trainer: Trainer, target_of) -> list[dict]:
    """Wrap ``on_step_end`` to snapshot the target before and after each update."""
    model = trainer.model
    original = model.on_step_end
    steps: list[dict] = []

    def on_step_end(progress: float) -> None:
        target = target_of(model).net
        before = {n: p.detach().clone() for n, p in target.named_parameters()}
        online = {k: {n: t.detach().clone() for n, t in d.items()} for k, d in _online(model).items()}
        original(progress)
        after = {n: p.detach().clone() for n, p in target.named_parameters()}
        after_buffers = {n: b.detach().clone() for n, b in target.named_buffers()}
        steps.append({"before": before, "online": online, "after": after, "after_buffers": after_buffers})

    model.on_step_end = on_step_end
    return steps


def _check(steps: list[dict], total: int, momentum_at) -> None:
    assert len(steps) == total >= 3
    for k, step in enumerate(steps, start=1):
        m = momentum_at(k, total)
        online = step["online"]["params"]
        assert step["after"].keys() == online.keys()
        averaged = [n for n in online if not n.endswith("alpha")]
        assert averaged
        for name in averaged:
            expected = m * step["before"][name].double() + (1 - m) * online[name].double()
            torch.testing.assert_close(step["after"][name].double(), expected, rtol=0, atol=1e-6, msg=name)
        for name in online.keys() - set(averaged):  # architecture parameters: copied
            assert torch.equal(step["after"][name], online[name]), name
        buffers = step["online"]["buffers"]
        assert step["after_buffers"].keys() == buffers.keys() and buffers
        for name, value in buffers.items():  # BatchNorm statistics: copied
            assert torch.equal(step["after_buffers"][name], value), name
        if m < 1:  # BYOL's last step has m = 1; before it, the update moves the target
            assert any(not torch.equal(step["before"][n], step["after"][n]) for n in averaged)


def _constant(k: int, total: int) -> float:
    return BASE


def _byol_cosine(k: int, total: int) -> float:
    return 1 - (1 - BASE) * (math.cos(math.pi * k / total) + 1) / 2


def _trainer(tmp_path, tiny_overrides, method: str, cls=Trainer) -> Trainer:
    hparams = f"{{momentum: {BASE}, queue_size: 256}}" if method == "moco" else f"{{momentum: {BASE}}}"
    overrides = [
        *tiny_overrides,
        f"method.name={method}",
        f"method.hparams={hparams}",
        "optim.epochs=1",
        "run.knn_every=0",
        "run.eval_at_end=false",
    ]
    if cls is HeadSearchTrainer:
        overrides += ["search.projector_layers=2", "search.predictor_layers=2"]
    return cls(build_config(overrides=overrides), RunDir.prepare(tmp_path / "run"), quiet=True)


@pytest.mark.parametrize(
    "method, target_of, momentum_at",
    [
        ("moco", lambda model: model.key_encoder, _constant),
        ("byol", lambda model: model.target, _byol_cosine),
    ],
)
def test_target_is_the_ema_of_the_online_network_at_every_step(tmp_path, tiny_overrides, method, target_of,
                                                               momentum_at):  # fmt: skip
    trainer = _trainer(tmp_path, tiny_overrides, method)
    steps = _record_steps(trainer, target_of)
    trainer.fit()
    _check(steps, trainer.plan.total_steps, momentum_at)


def test_search_target_averages_weights_and_copies_alphas(tmp_path, tiny_overrides):
    trainer = _trainer(tmp_path, tiny_overrides, "byol", HeadSearchTrainer)
    steps = _record_steps(trainer, lambda model: model.target)
    trainer.fit()
    _check(steps, trainer.plan.total_steps, _byol_cosine)
    alphas = [n for n in steps[0]["online"]["params"] if n.endswith("alpha")]
    assert alphas == ["1.alpha"]  # the searched projector's alphas
    # the architecture step moved the online alphas, so a copy differs from an average
    assert not torch.equal(steps[-1]["before"]["1.alpha"], steps[-1]["online"]["params"]["1.alpha"])
