"""The Python API; the CLI is a thin layer over these functions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from selfnas.config import TrainConfig, build_config
from selfnas.errors import ConfigError
from selfnas.eval.evaluate import evaluate, load_run_config
from selfnas.rundir import RunDir
from selfnas.train.trainer import Trainer, check_resumable


def default_run_dir(prefix: str) -> Path:
    return Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    overrides: list[str] | tuple[str, ...] = (),
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Pretrain (and, unless ``config.run.eval_at_end`` is off, evaluate) into a run directory.

    With ``resume``, the run's saved config is used; ``overrides`` may still change it
    (for example a lower ``optim.lr`` after a NaN). Returns the evaluation, or the last
    training metrics when evaluation is off.
    """
    if out is None:
        if resume:
            raise ConfigError("--resume needs --out RUN_DIR: the run to continue")
        out = default_run_dir("train")
    run = RunDir.prepare(out, resume=resume, overwrite=overwrite)
    if resume:
        check_resumable(run)
        config = build_config(base=load_run_config(run).model_dump(mode="json"), overrides=overrides)
    elif config is None:
        config = build_config(overrides=overrides)
    trainer = Trainer(config, run, quiet=quiet, argv=argv)
    last = trainer.fit(resume=resume)
    if not config.run.eval_at_end:
        return last
    has_labels = trainer.data.train.labeled
    if not has_labels:
        return last
    return evaluate(run.path, device=config.run.device)


__all__ = ["evaluate", "train"]
