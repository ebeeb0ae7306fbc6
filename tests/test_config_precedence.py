"""One precedence rule in every command: defaults < --config file < --set < flags the user typed;
a flag nobody typed sets nothing. Each command runs through typer's CliRunner with the API function
it calls replaced by one that stops with the config it was given: nothing trains."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command
from typer.testing import CliRunner

import selfnas.api
from selfnas.cli import app
from selfnas.config import (
    FinetuneConfig,
    MethodConfig,
    OptimConfig,
    RunConfig,
    SearchConfig,
    SupervisedConfig,
)
from selfnas.groundtruth.tables import TableConfig
from selfnas.methods import METHOD_RECORDS
from selfnas.studies.plan import StudyConfig, study_train_defaults


class Captured(Exception):
    """Raised by a stand-in API function: the config (and keyword arguments) a command resolved."""

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__("captured")
        self.config, self.kwargs = config, kwargs


def capture(*args: Any, **kwargs: Any) -> None:
    raise Captured(args[0], **kwargs)


@pytest.fixture
def resolve(monkeypatch, tmp_path):
    """``resolve(*args)``: the config ``selfnas ARGS`` would run with (and the API call's kwargs)."""
    for name in ("train", "train_supervised", "search", "study", "table"):
        monkeypatch.setattr(selfnas.api, name, capture)
    real_finetune_config = selfnas.api.finetune_config
    monkeypatch.setattr(
        selfnas.api, "finetune_config", lambda *a, **k: capture(real_finetune_config(*a, **k))
    )

    def run(*args: str) -> Captured:
        result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
        assert isinstance(result.exception, Captured), (result.output, result.exception)
        return result.exception

    return run


@pytest.fixture
def source_run(tmp_path) -> Path:
    """A pretrained run as `finetune` reads it before training: its config (data: digits) and a
    model file."""
    run = tmp_path / "source"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"name": "digits"}}))
    (run / "model.safetensors").write_bytes(b"")
    return run


@dataclass(frozen=True)
class Ladder:
    """One setting of one command at each level: ``default`` (the schema's), then ``config`` (in a
    --config file at ``key``; None where the command takes no --config), ``set`` (``--set
    key=VALUE``) and ``flag`` (typed: ``flag_args``). ``read`` takes it out of the resolved config."""

    command: tuple[str, ...]
    key: str
    read: Any
    default: Any
    config: Any
    set: Any
    flag: Any
    flag_args: tuple[str, ...]

    def args(self, levels: set[str], tmp_path: Path) -> list[str]:
        args = list(self.command)
        if "config" in levels:
            data: dict[str, Any] = {}
            node = data
            *sections, last = self.key.split(".")
            for section in sections:
                node = node.setdefault(section, {})
            node[last] = self.config
            path = tmp_path / "c.yaml"
            path.write_text(yaml.safe_dump(data))
            args += ["--config", str(path)]
        if "set" in levels:
            args += ["--set", f"{self.key}={self.set}"]
        if "flag" in levels:
            args += list(self.flag_args)
        return args


def _search(c: Captured) -> SearchConfig:
    return c.config.search or SearchConfig()  # no search keys given: the API's, the schema's defaults


def _supervised(c: Captured) -> SupervisedConfig:
    return c.config.supervised or SupervisedConfig()


LADDERS = [
    Ladder(("train",), "optim.batch_size", lambda c: c.config.optim.batch_size,
           256, 128, 64, 32, ("--batch-size", "32")),
    Ladder(("train",), "run.compile", lambda c: c.config.run.compile,
           False, True, False, True, ("--compile",)),
    Ladder(("train",), "data.name", lambda c: c.config.data.name,
           "fashion-mnist", "digits", "cifar10", "synthetic", ("--data", "synthetic")),
    Ladder(("train", "--supervised"), "supervised.epochs", lambda c: _supervised(c).epochs,
           5, 7, 8, 9, ("--epochs", "9")),
    Ladder(("search",), "search.space", lambda c: _search(c).space,
           "heads", "cells", "resnet-variants", "mobilenet-variants", ("--space", "mobilenet-variants")),
    Ladder(("search",), "search.order", lambda c: _search(c).order, 1, 2, 1, 2, ("--order", "2")),
    Ladder(("search",), "search.strategy", lambda c: _search(c).strategy,
           "darts", "tpe", "random", "evolution", ("--strategy", "evolution")),
    Ladder(("search",), "optim.epochs", lambda c: c.config.optim.epochs,
           10, 3, 0.5, 0.05, ("--epochs", "0.05")),
    Ladder(("study",), "study.archs", lambda c: c.config.archs, 8, None, 3, 5, ("--archs", "5")),
    Ladder(("study",), "optim.epochs", lambda c: c.config.train.optim.epochs,
           1, None, 2, 3, ("--epochs", "3")),
    Ladder(("study",), "method.name", lambda c: c.config.train.method.name,
           "simclr", None, "byol", "moco", ("--method", "moco")),
    Ladder(("table",), "table.archs", lambda c: c.config.archs, 40, None, 7, 9, ("--archs", "9")),
    Ladder(("table",), "table.space", lambda c: c.config.space,
           "heads", None, "cells", "resnet-variants", ("--space", "resnet-variants")),
    Ladder(("table",), "run.threads", lambda c: c.kwargs["threads"], None, None, 2, 1, ("--threads", "1")),
    Ladder(("finetune", "SOURCE"), "finetune.labels", lambda c: c.config.finetune.labels,
           "10%", None, "1%", 5, ("--labels", "5")),
    Ladder(("finetune", "SOURCE"), "data.name", lambda c: c.config.data.name,  # default: the source run's
           "digits", None, "cifar10", "fashion-mnist", ("--data", "fashion-mnist")),
]  # fmt: skip


@pytest.mark.parametrize("ladder", LADDERS, ids=lambda ld: f"{' '.join(ld.command[:2])}:{ld.key}")
def test_each_level_overrides_the_one_below_and_an_untyped_flag_nothing(
    resolve, tmp_path, source_run, ladder
):
    levels = ["config", "set", "flag"] if ladder.config is not None else ["set", "flag"]
    command = tuple(str(source_run) if a == "SOURCE" else a for a in ladder.command)
    ladder = Ladder(**{**ladder.__dict__, "command": command})
    for present in itertools.product([False, True], repeat=len(levels)):
        given = {level for level, on in zip(levels, present, strict=True) if on}
        top = next((level for level in reversed(levels) if level in given), "default")
        expected = getattr(ladder, top)
        got = ladder.read(resolve(*ladder.args(given, tmp_path)))
        assert got == expected, f"{' '.join(ladder.args(given, tmp_path))}: {got!r}, not {expected!r}"


def test_a_search_config_file_is_not_overridden_by_flags_nobody_typed(resolve, tmp_path):
    """The report of issue 34: a cells search of order 2 in the config ran as a heads search of
    order 1, because the search flags' own defaults were appended after --config and --set."""
    path = tmp_path / "c.yaml"
    path.write_text("search:\n  space: cells\n  order: 2\n")
    typed = ["--train-limit", "512", "--batch-size", "64", "--epochs", "0.05"]
    config = resolve("search", "--config", str(path), *typed).config
    assert (config.search.space, config.search.order, config.search.strategy) == ("cells", 2, "darts")
    assert (config.data.train_limit, config.optim.batch_size, config.optim.epochs) == (512, 64, 0.05)
    assert resolve("search", "--set", "search.order=2", *typed).config.search.order == 2


def test_no_compile_typed_turns_off_what_the_config_turned_on(resolve, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  compile: true\n")
    assert resolve("train", "--config", str(path)).config.run.compile is True
    assert resolve("train", "--config", str(path), "--no-compile").config.run.compile is False


def _help_of(command: str) -> dict[str, str]:
    """Each option's help text as ``selfnas COMMAND --help`` shows it."""
    click_command = get_command(app).commands[command]
    ctx = click_command.make_context(command, ["--help"], resilient_parsing=True)
    click_command.get_help(ctx)
    return {str(p.name): " ".join((getattr(p, "help", None) or "").split()) for p in click_command.params}


def test_help_shows_the_defaults_of_the_config_schema():
    shown = {c: _help_of(c) for c in ("train", "search", "study", "table", "finetune")}
    optim, method, search = OptimConfig(), MethodConfig(), SearchConfig()
    expected = {
        "train": {"batch_size": optim.batch_size, "epochs": f"{optim.epochs:g}", "method": method.name,
                  "seed": RunConfig().seed, "compile": "compile" if RunConfig().compile else "no-compile"},
        "search": {"space": search.space, "strategy": search.strategy, "order": search.order,
                   "trials": search.trials, "score": search.score, "study_name": search.study_name},
        "study": {"space": StudyConfig.model_fields["space"].default,
                  "archs": StudyConfig.model_fields["archs"].default,
                  "method": study_train_defaults()["method"]["name"],
                  "epochs": study_train_defaults()["optim"]["epochs"]},
        "table": {name: TableConfig.model_fields[name].default
                  for name in ("space", "archs", "seeds", "seeded_archs")},
        "finetune": {"labels": FinetuneConfig().labels},
    }  # fmt: skip
    for command, defaults in expected.items():
        for flag, default in defaults.items():
            help_text = shown[command][flag]
            assert help_text.endswith(f"[default: {default}]"), (command, flag, help_text)
    per_method = ", ".join(f"{m.name} {m.base_lr:g}" for m in METHOD_RECORDS.values())
    assert shown["train"]["lr"].endswith(f"[default: per method: {per_method}]")
    assert shown["table"]["threads"].count("[default:") == 1  # its own words, no schema None


@pytest.fixture
def resolve_quickstart(monkeypatch, tmp_path):
    """``resolve_quickstart(*args)``: (which pipeline, the config) ``selfnas quickstart ARGS`` runs."""
    import selfnas.pipeline

    for name in ("compare_heads", "compare_backbones"):
        monkeypatch.setattr(selfnas.pipeline, name, lambda cfg, *a, _n=name, **k: capture(cfg, pipeline=_n))

    def run(*args: str) -> tuple[str, Any]:
        result = CliRunner().invoke(app, ["quickstart", *args, "--out", str(tmp_path / "qs")])
        assert isinstance(result.exception, Captured), (result.output, result.exception)
        return result.exception.kwargs["pipeline"], result.exception.config

    return run


def test_quickstart_space_follows_the_rule(resolve_quickstart, tmp_path):
    cells = tmp_path / "cells.yaml"
    cells.write_text(yaml.safe_dump({"search": {"space": "cells", "strategy": "tpe", "trials": 3}}))
    pipeline, cfg = resolve_quickstart()  # the embedded default: the cells backbone job
    assert pipeline == "compare_backbones" and cfg.search.space == "cells" and cfg.search.screen == 16
    pipeline, cfg = resolve_quickstart("--space", "heads")  # the embedded NASiam heads job
    assert pipeline == "compare_heads" and cfg.search.space == "heads" and cfg.search.screen == 0
    pipeline, cfg = resolve_quickstart("--space", "resnet-variants")  # the backbone job, other space
    assert (
        pipeline == "compare_backbones" and cfg.search.space == "resnet-variants" and cfg.search.screen == 16
    )
    pipeline, cfg = resolve_quickstart("--config", str(cells))  # untyped --space overrides nothing
    assert pipeline == "compare_backbones" and cfg.search.space == "cells" and cfg.search.trials == 3
    pipeline, cfg = resolve_quickstart("--config", str(cells), "--set", "search.space=resnet-variants")
    assert cfg.search.space == "resnet-variants"  # --set over the file
    pipeline, cfg = resolve_quickstart(
        "--config", str(cells), "--set", "search.space=resnet-variants", "--space", "cells"
    )
    assert pipeline == "compare_backbones" and cfg.search.space == "cells"  # the typed flag over --set
    pipeline, cfg = resolve_quickstart("--config", str(cells), "--space", "heads")
    assert pipeline == "compare_heads" and cfg.search.space == "heads"
