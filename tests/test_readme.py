"""The README's "Use the found model" code block runs as written."""

import os
import re

import pytest

from selfnas.config import build_config
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer
from tests.conftest import FASHION_MNIST, REPO


def _python_block(section: str) -> str:
    text = (REPO / "README.md").read_text()
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", body, re.S).group(1)


@pytest.mark.skipif(not FASHION_MNIST.exists(), reason="apt-get install dataset-fashion-mnist")
def test_use_the_found_model_block_runs(tmp_path, capsys):
    cfg = build_config(overrides=[
        "data.train_limit=256", "optim.epochs=1", "optim.batch_size=128", "run.knn_every=0",
        "run.device=cpu", "run.eval_at_end=false",
    ])  # fmt: skip
    Trainer(cfg, RunDir.prepare(tmp_path / "runs" / "quickstart" / "found"), quiet=True).fit()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(_python_block("Use the found model"), "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    assert "torch.Size([8, 64])" in capsys.readouterr().out
