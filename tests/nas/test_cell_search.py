"""DARTS over the cell space with an SSL method (CSNAS's DARTS setting), search -> retrain."""

import pytest
import torch

from selfnas.api import with_genotype
from selfnas.config import build_config
from selfnas.models.cell_genotype import CellGenotype
from selfnas.models.genotype import load_genotype
from selfnas.nas.strategies.darts import CellSearchTrainer
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer

CELLS = [
    "search.space=cells",
    "search.nodes=2",
    "search.cell_width=4",
    "search.cell_layers=3",
    "run.knn_every=0",
]


pytestmark = pytest.mark.usefixtures("single_thread")


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


def test_cell_search_run_draws_reports_and_refuses_export(tmp_path, tiny_overrides):
    from PIL import Image

    from selfnas.errors import RunDirError
    from selfnas.export import export_run
    from selfnas.report.draw import draw
    from selfnas.report.write import write_report

    cfg = build_config(overrides=[*tiny_overrides, *CELLS, "optim.epochs=1"])
    CellSearchTrainer(cfg, RunDir.prepare(tmp_path / "s"), quiet=True).fit()
    svg, png = draw(tmp_path / "s", tmp_path / "cells")
    genotype = load_genotype(tmp_path / "s" / "genotype.json")
    assert all(op in svg.read_text() for op, _ in genotype.normal)
    assert len(Image.open(png).convert("RGB").getcolors(maxcolors=1 << 20)) > 10
    html, _ = write_report(tmp_path / "s")
    assert "Cell search" in html.read_text() and "found normal and reduction cells" in html.read_text()
    with pytest.raises(RunDirError, match="supernet"):
        export_run(tmp_path / "s", tmp_path / "export")
