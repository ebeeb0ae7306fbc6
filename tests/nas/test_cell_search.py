"""DARTS over the cell space with an SSL method (CSNAS's DARTS setting), search -> retrain."""

import pytest
import torch

from selfnas.api import with_genotype
from selfnas.config import build_config
from selfnas.nas.cell_genotype import CellGenotype
from selfnas.nas.genotype import load_genotype
from selfnas.nas.strategies.darts import CellSearchTrainer
from selfnas.rundir import RunDir
from selfnas.train.trainer import Trainer

CELLS = [
    "search.space=cells",
    "search.nodes=2",
    "search.cell_width=4",
    "search.cell_layers=3",
    "run.knn_every=0",
]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny supernets stall on 2 threads of a shared 2-core machine
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("method,order", [("simclr", 1), ("byol", 2)])
def test_cell_search_moves_alphas_and_writes_a_cell_genotype(tmp_path, tiny_overrides, method, order):
    cfg = build_config(overrides=[*tiny_overrides, *CELLS, f"method.name={method}", f"search.order={order}"])
    trainer = CellSearchTrainer(cfg, RunDir.prepare(tmp_path / "s"), quiet=True)
    before = trainer.model.backbone.normal_alpha.detach().clone()
    trainer.fit()
    assert not torch.equal(before, trainer.model.backbone.normal_alpha)
    genotype = load_genotype(tmp_path / "s" / "genotype.json")
    assert isinstance(genotype, CellGenotype) and genotype.nodes == 2

    retrain_cfg = with_genotype(build_config(overrides=tiny_overrides), tmp_path / "s" / "genotype.json")
    assert retrain_cfg.model.backbone == "darts_cells"
    retrain = Trainer(retrain_cfg, RunDir.prepare(tmp_path / "retrain"), quiet=True)
    retrain.fit()
    assert (tmp_path / "retrain" / "model.safetensors").exists()
