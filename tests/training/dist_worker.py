"""Worker of tests/train/test_distributed.py, run under torchrun (2 ranks) or alone (1 process).

python tests/train/dist_worker.py MODE OUT OVERRIDES_JSON [ARGS...]

grads OUT OVERRIDES      one float64 step of every SSL method (SyncBatchNorm, gathered negatives and
                         keys, averaged gradients); each rank saves OUT/grads_<rank>_of_<world>.pt
search OUT OVERRIDES RUN DARTS search into RUN; each rank saves its alphas and the genotype it holds
                         to OUT/search_<rank>_of_<world>.pt
crash OUT OVERRIDES      `selfnas train` into OUT that dies on rank 0 right after the step-3 checkpoint
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from selfnas import distributed  # noqa: E402
from selfnas.config import build_config  # noqa: E402


def grads(out: Path, overrides: list[str]) -> None:
    from selfnas.training.builder import build_method

    distributed.init()
    rank, world = distributed.rank(), distributed.world()
    saved = {}
    for method in ("simsiam", "simclr", "moco", "byol"):
        extra = ["method.hparams={queue_size: 256}"] if method == "moco" else []
        cfg = build_config(overrides=[*overrides, f"method.name={method}", *extra])
        torch.manual_seed(0)
        model = distributed.prepare_model(build_method(cfg, 1).double())
        g = torch.Generator().manual_seed(1)
        x1, x2 = (torch.randn(64, 1, 28, 28, generator=g, dtype=torch.float64) for _ in range(2))
        rows = slice(rank * 64 // world, (rank + 1) * 64 // world)
        out_ = model(x1[rows], x2[rows])
        out_.loss.backward()
        params = [p for p in model.parameters() if p.requires_grad]
        distributed.all_reduce_grads(params)
        model.on_step_end(0.5)  # momentum targets, MoCo's queue
        saved[method] = {
            "loss": distributed.mean([out_.loss.detach()])[0],
            "grads": [p.grad.clone() for p in params],
            "buffers": {n: b.clone() for n, b in model.named_buffers()},
        }
    torch.save(saved, out / f"grads_{rank}_of_{world}.pt")


def search(out: Path, overrides: list[str], run_dir: str) -> None:
    from selfnas.api import _fit
    from selfnas.nas.strategies.darts import CellSearchTrainer, HeadSearchTrainer

    cfg = build_config(overrides=overrides)
    assert cfg.search is not None
    cls = CellSearchTrainer if cfg.search.space == "cells" else HeadSearchTrainer
    trainer, _ = _fit(cls, cfg, run_dir, False, False, True, (), None, "search")
    torch.save(
        {
            "alphas": [a.detach().clone() for a in trainer.arch_parameters()],
            "genotype": trainer.final_genotype.to_json(),
        },
        out / f"search_{trainer.rank}_of_{trainer.world}.pt",
    )


def crash(out: Path, overrides: list[str]) -> None:
    from selfnas import api
    from selfnas.training import trainer as trainer_mod

    original = trainer_mod.save_checkpoint

    def crash_after(path, model, optimizers, extra):
        original(path, model, optimizers, extra)
        if extra["step"] == 3:
            raise SystemExit(3)  # rank 0 dies; torchrun stops rank 1

    trainer_mod.save_checkpoint = crash_after
    api.train(build_config(overrides=overrides), out=out, quiet=True)


if __name__ == "__main__":
    mode, target, overrides_json, *rest = sys.argv[1:]
    torch.set_num_threads(1)
    {"grads": grads, "search": search, "crash": crash}[mode](Path(target), json.loads(overrides_json), *rest)
