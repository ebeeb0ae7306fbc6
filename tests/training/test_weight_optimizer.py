"""The SSL trainer's weight optimizer (also the lightly baseline's): decay groups, fixed predictor LR."""

import torch
from torch import nn

from selfnas.config import build_config
from selfnas.training.builder import weight_optimizer


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
        self.predictor = nn.Linear(4, 4)
        self.alpha = nn.Parameter(torch.zeros(3))  # an architecture parameter: never a weight here


def _groups(optimizer):
    return [({id(p) for p in g["params"]}, g["weight_decay"], g["fixed_lr"]) for g in optimizer.param_groups]


def test_decay_only_on_weights_of_two_or_more_dimensions():
    model = _Model()
    opt = weight_optimizer(model, build_config(overrides=["optim.momentum=0.8"]), 0.3, 5e-4)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.8 and opt.defaults["lr"] == 0.3
    decayed = {id(model.backbone[0].weight), id(model.predictor.weight)}
    plain = {id(model.backbone[0].bias), id(model.backbone[1].weight), id(model.backbone[1].bias),
             id(model.predictor.bias)}  # fmt: skip
    assert _groups(opt) == [(decayed, 5e-4, False), (plain, 0.0, False)]


def test_fixed_predictor_lr_splits_the_predictor_and_adamw_is_chosen():
    model = _Model()
    config = build_config(overrides=["optim.fix_predictor_lr=true", "optim.optimizer=adamw"])
    opt = weight_optimizer(model, config, 1e-3, 0.1)
    assert isinstance(opt, torch.optim.AdamW)
    p = model.predictor
    assert _groups(opt)[2:] == [({id(p.weight)}, 0.1, True), ({id(p.bias)}, 0.0, True)]
    assert id(model.alpha) not in {id(q) for g in opt.param_groups for q in g["params"]}
