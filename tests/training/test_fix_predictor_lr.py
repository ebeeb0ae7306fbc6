"""SimSiam's fixed predictor LR: the predictor stays at the peak LR while the rest follows the schedule."""

import pytest

from selfnas.config import build_config
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer
from tests.conftest import TINY


def _lrs(trainer: Trainer) -> dict[bool, set[float]]:
    out: dict[bool, set[float]] = {}
    for group in trainer.optimizer.param_groups:
        if group["params"]:
            out.setdefault(bool(group.get("fixed_lr")), set()).add(group["lr"])
    return out


@pytest.mark.parametrize("fixed", [True, False])
def test_predictor_keeps_the_peak_lr_only_when_asked(tmp_path, fixed):
    overrides = ["optim.epochs=1", "optim.warmup_epochs=0.5", "run.knn_every=0", "run.eval_at_end=false"]
    cfg = build_config(overrides=[*TINY, *overrides, f"optim.fix_predictor_lr={str(fixed).lower()}"])
    trainer = Trainer(cfg, RunDir.prepare(tmp_path / "run"), quiet=True)
    trainer.fit()
    lrs, peak = _lrs(trainer), trainer.plan.peak_lr
    assert max(lrs[False]) < 0.5 * peak  # the cosine has brought the rest down by the last step
    predictor = {id(p) for p in trainer.model.predictor.parameters()}
    fixed_params = {id(p) for g in trainer.optimizer.param_groups if g.get("fixed_lr") for p in g["params"]}
    if fixed:
        assert lrs[True] == {peak} and fixed_params == predictor
    else:
        assert True not in lrs and not fixed_params
