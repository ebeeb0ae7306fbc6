"""``selfnas`` command line: a thin layer over :mod:`selfnas.api`.

User mistakes (:class:`selfnas.errors.SelfnasError`) print one line and exit 2.

The commands import the heavy modules (torch, the API) inside their bodies, so that
``selfnas --help`` and a mistyped flag answer at once: keep those imports there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand, TyperOption

from selfnas.errors import SelfnasError
from selfnas.registry import Registry
from selfnas.render.tables import eval_rows, percent  # standard library only: cheap

app = typer.Typer(
    name="selfnas",
    help="Architecture search with self-supervised learning: searched without labels, judged with labels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: defaults in brackets, no type column for flags
)
console = Console()

Opt = typer.Option

#: The config key each command's flags set. A flag the user typed becomes ``key=value``, applied
#: after --config and --set: defaults < --config < --set < typed flags. A flag not typed is None and
#: sets nothing; ``--help`` shows its default as the config schema holds it (:class:`_ConfigCommand`).
TRAIN_KEYS = {
    "data": "data.name", "data_root": "data.root", "download": "data.download",
    "train_limit": "data.train_limit", "method": "method.name", "backbone": "model.backbone",
    "epochs": "optim.epochs", "batch_size": "optim.batch_size", "lr": "optim.lr", "seed": "run.seed",
    "device": "run.device", "compile": "run.compile",
}  # fmt: skip


def _under(section: str, *flags: str) -> dict[str, str]:
    return {flag: f"{section}.{flag}" for flag in flags}


FLAG_KEYS: dict[str, dict[str, str]] = {
    "train": TRAIN_KEYS,
    "train --supervised": {**TRAIN_KEYS, **_under("supervised", "epochs", "batch_size", "lr")},
    "search": {**TRAIN_KEYS, **_under("search", "space", "strategy", "order", "trials", "score", "storage",
                                      "study_name", "n_workers")},
    "study": {**TRAIN_KEYS, **_under("study", "space", "archs", "scenarios", "user_scenarios", "source",
                                     "pretrain_on", "limit", "data_root")},
    "table": {"threads": "run.threads", **_under("table", "space", "archs", "seeds", "seeded_archs")},
    "finetune": {"labels": "finetune.labels"},  # --data and --labels go to the API, which applies them last
    "quickstart": {"space": "search.space"},
}  # fmt: skip


def _typed(command: str, **flags: object) -> list[str]:
    """The overrides of the flags the user typed (None: not typed) under ``FLAG_KEYS[command]``:
    ``_typed("search", order=2, space=None) == ["search.order=2"]``; append them after --set."""
    from selfnas.config import typed_overrides

    keys = FLAG_KEYS[command]
    return typed_overrides({keys[name]: value for name, value in flags.items()})


def _schema_defaults(command: str) -> dict[str, object]:
    """The defaults of the keys a command's flags set, flat: ``{"optim.epochs": 10.0, ...}``; a
    study's or table's own keys under ``study.`` / ``table.``, their training keys plain.

    Read when help is shown, not when this module is imported: selfnas.config costs about 0.1 s
    (pydantic, no torch), but the study and table schemas live beside code that imports torch
    (about 3 s), and no command should pay for help it does not show."""
    from selfnas.config import TrainConfig
    from selfnas.methods import METHOD_RECORDS

    own: dict[str, Any] = {}
    if command == "study":
        from selfnas.studies.plan import StudyConfig

        own = StudyConfig().model_dump(mode="json")
    elif command == "table":
        from selfnas.groundtruth.tables import TableConfig

        own = TableConfig().model_dump(mode="json")
    train = own.pop("train", TrainConfig(search={}, supervised={}, finetune={}).model_dump(mode="json"))
    flat = {f"{section}.{k}": v for section, keys in train.items() for k, v in (keys or {}).items()}
    flat.update({f"{command}.{k}": v for k, v in own.items()})
    if flat["optim.lr"] is None:
        per_method = ", ".join(f"{m.name} {m.base_lr:g}" for m in METHOD_RECORDS.values())
        flat["optim.lr"] = "per method: " + per_method
    return flat


def _help(text: str, default: str) -> str:
    """``text`` with a default that the config schema does not hold: ``"... [default: all]"``."""
    return f"{text}  [default: {default}]"


class _Command(TyperCommand):
    """Usage lines name arguments plainly (``selfnas eval [OPTIONS] TARGET``), not as typer's
    ``{TARGET}``, which reads like an unfilled template."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        return [piece.strip("{}") for piece in super().collect_usage_pieces(ctx)]


class _ConfigCommand(_Command):
    """A command whose flags set config keys (``FLAG_KEYS[name]``): its ``--help`` shows each
    flag's default from the config schema, unless the flag's help names another."""

    def get_help(self, ctx: typer.Context) -> str:
        keys, defaults = FLAG_KEYS[str(self.name)], _schema_defaults(str(self.name))
        for param in self.params:
            value = defaults.get(keys.get(str(param.name), ""))
            if value is None or not isinstance(param, TyperOption) or "[default:" in (param.help or ""):
                continue
            if isinstance(value, bool) and param.secondary_opts:  # --compile / --no-compile
                value = (param.opts if value else param.secondary_opts)[0].lstrip("-")
            param.help = f"{param.help}  [default: {f'{value:g}' if isinstance(value, float) else value}]"
        return super().get_help(ctx)


# -- options shared by train, search and study, each declared once -------------------------------
# An alias where every command words the option alike; a function of the words that differ otherwise.

ConfigOpt = Annotated[Path | None, Opt("--config", "-c", help="TOML or YAML config file")]
DataRootOpt = Annotated[
    str | None, Opt(help=_help("folder holding the dataset files", default="the dataset's standard place"))
]
TrainLimitOpt = Annotated[int | None, Opt(help=_help("use at most this many training images", default="all"))]
MethodOpt = Annotated[str | None, Opt(help="simsiam | simclr | moco | byol")]
BackboneOpt = Annotated[str | None, Opt(help="backbone name (see `selfnas backbones`)")]
BatchSizeOpt = Annotated[int | None, Opt(help="images per step")]
DeviceOpt = Annotated[str | None, Opt(help="auto | cpu | cuda[:N]")]
QuietOpt = Annotated[bool, Opt("--quiet", "-q", help="no progress bar; plain log lines")]


def _out(command: str, what: str = "run") -> typer.models.OptionInfo:
    return Opt("--out", "-o", help=_help(f"{what} directory", default=f"runs/{command}-<time>"))


def _data(note: str = "") -> typer.models.OptionInfo:
    listed = (
        "dataset or scenario: fashion-mnist, digits, cifar10, fashion-rotated, imagefolder:PATH, npy:PATH, "
        "or your folder as a scenario: NAME=imagefolder:PATH"
    )
    return Opt(help=listed + (f" ({note})" if note else ""))


def _epochs(what: str) -> typer.models.OptionInfo:
    return Opt(help=f"{what} epochs (fractions allowed)")


def _seed(of: str = "") -> typer.models.OptionInfo:
    return Opt(help="random seed" + (f" of {of}" if of else ""))


def _set(example: str, keys: str = "any config key") -> typer.models.OptionInfo:
    return Opt("--set", "-s", help=f"override {keys}: {example}")


def _resume(what: str = "run", how: str = "where it stopped") -> typer.models.OptionInfo:
    return Opt(help=f"continue the {what} in --out {how}")


def _overwrite(what: str = "an existing run") -> typer.models.OptionInfo:
    return Opt(help=f"replace {what} in --out")


@app.command(cls=_ConfigCommand)
def train(
    config: ConfigOpt = None,
    out: Annotated[Path | None, _out("train")] = None,
    data: Annotated[str | None, _data()] = None,
    data_root: DataRootOpt = None,
    download: Annotated[bool | None, Opt(help="let torchvision datasets download (needs internet)")] = None,
    train_limit: TrainLimitOpt = None,
    method: MethodOpt = None,
    backbone: BackboneOpt = None,
    epochs: Annotated[float | None, _epochs("training")] = None,
    batch_size: BatchSizeOpt = None,
    lr: Annotated[float | None, Opt(help="base learning rate per 256 images")] = None,
    seed: Annotated[int | None, _seed()] = None,
    device: DeviceOpt = None,
    compile: Annotated[bool | None, Opt("--compile/--no-compile", help="torch.compile the model")] = None,
    set_: Annotated[list[str] | None, _set("optim.lr=0.1")] = None,
    genotype: Annotated[
        Path | None, Opt(help="genotype.json of found heads: pretrain them from scratch")
    ] = None,
    supervised: Annotated[
        bool,
        Opt(
            "--supervised/--self-supervised",
            help="train from scratch with labels (the DARTS / CSNAS evaluation phase: the `supervised` "
            "config section) instead of self-supervised pretraining",
        ),
    ] = False,
    resume: Annotated[bool, _resume()] = False,
    overwrite: Annotated[bool, _overwrite()] = False,
    quiet: QuietOpt = False,
) -> None:
    """Pretrain a backbone with self-supervised learning, then evaluate it (kNN + linear probe);
    with --supervised, train it from scratch with labels and report val and test accuracy."""
    from selfnas.config import build_config  # validate before the heavy torch imports

    typed = _typed(
        "train --supervised" if supervised else "train",  # the budget flags set the supervised budget
        data=data, data_root=data_root, download=download, train_limit=train_limit, method=method,
        backbone=backbone, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device,
        compile=compile,
    )  # fmt: skip
    overrides = [*(set_ or []), *typed]
    cfg = None if resume else build_config(config, overrides)
    from selfnas.api import train as api_train
    from selfnas.api import train_supervised, with_genotype

    if genotype is not None and cfg is not None:
        cfg = with_genotype(cfg, genotype)

    result = (train_supervised if supervised else api_train)(
        cfg,
        out=out,
        resume=resume,
        overwrite=overwrite,
        quiet=quiet,
        overrides=overrides if resume else (),
        argv=sys.argv,
    )
    _print_result(result)
    if _main_process():
        run_dir = result.get("run_dir", "RUN_DIR")
        _next_steps(
            f"run: {run_dir}",
            f"selfnas report {run_dir}      # report.html with curves, evaluation and provenance",
            f"selfnas export {run_dir} --out {run_dir}/export      # the backbone for use without selfnas",
        )


@app.command(cls=_ConfigCommand)
def search(
    space: Annotated[
        str | None,
        Opt(help="heads (NASiam) | cells (DARTS / CSNAS) | resnet-variants | mobilenet-variants (studies)"),
    ] = None,
    strategy: Annotated[
        str | None, Opt(help="darts (heads, cells) | tpe | random | evolution (cells and the variant spaces)")
    ] = None,
    trials: Annotated[int | None, Opt(help="tpe/random/evolution: trials in the study")] = None,
    score: Annotated[
        str | None,
        Opt(
            help="trial score: a label-free score, e.g. rankme_normalized, lidar, "
            "naswot (zero-cost: no training), params; knn is supervised"
        ),
    ] = None,
    storage: Annotated[
        str | None,
        Opt(
            help=_help(
                "study storage: postgresql://... (machines), journal:FILE (processes)",
                default="sqlite in the run directory",
            )
        ),
    ] = None,
    study_name: Annotated[str | None, Opt(help="name of the shared study to join in --storage")] = None,
    n_workers: Annotated[int | None, Opt(help="local worker processes for the study")] = None,
    order: Annotated[int | None, Opt(help="DARTS order: 1 (first) or 2 (unrolled)")] = None,
    config: ConfigOpt = None,
    out: Annotated[Path | None, _out("search")] = None,
    data: Annotated[str | None, _data("unlabeled is fine")] = None,
    data_root: DataRootOpt = None,
    train_limit: TrainLimitOpt = None,
    method: MethodOpt = None,
    backbone: BackboneOpt = None,
    epochs: Annotated[float | None, _epochs("search")] = None,
    batch_size: BatchSizeOpt = None,
    seed: Annotated[int | None, _seed()] = None,
    device: DeviceOpt = None,
    set_: Annotated[list[str] | None, _set("search.beta_decay=0.5")] = None,
    resume: Annotated[bool, _resume("search")] = False,
    overwrite: Annotated[bool, _overwrite()] = False,
    quiet: QuietOpt = False,
) -> None:
    """Search an architecture without labels; writes genotype.json (retrain it with `train --genotype`)."""
    from selfnas.config import build_config

    typed = _typed(
        "search", space=space, strategy=strategy, order=order, trials=trials, score=score, storage=storage,
        study_name=study_name, n_workers=n_workers, data=data, data_root=data_root, train_limit=train_limit,
        method=method, backbone=backbone, epochs=epochs, batch_size=batch_size, seed=seed, device=device,
    )  # fmt: skip
    overrides = [*(set_ or []), *typed]
    cfg = None if resume else build_config(config, overrides)
    from selfnas.api import search as api_search

    result = api_search(cfg, out=out, resume=resume, overwrite=overwrite, quiet=quiet,
                        overrides=() if not resume else [o for o in overrides if not o.startswith("search.")],
                        argv=sys.argv)  # fmt: skip
    if not _main_process():
        return
    genotype = result.get("genotype", {})
    if genotype.get("space") not in (None, "heads", "cells"):
        table = Table(title=f"found {genotype['space']} backbone (trial score: {result.get('score')})")
        table.add_column("choice")
        table.add_column("value")
        for key, value in genotype.items():
            if key not in ("format", "version", "space"):
                table.add_row(key, json.dumps(value))
    elif genotype.get("space") == "cells":
        table = Table(title="found cells (op <- input per node edge; inputs 0, 1 = previous cells)")
        table.add_column("cell")
        table.add_column("edges")
        for cell in ("normal", "reduce"):
            table.add_row(cell, ", ".join(f"{op} <- {i}" for op, i in genotype[cell]))
    else:
        table = Table(title="found heads")
        table.add_column("head")
        table.add_column("ops per layer")
        table.add_column("parameter-free")
        for head, ops in genotype.items():
            table.add_row(head, " -> ".join(ops), str(result.get("parameter_free", {}).get(head, "")))
    console.print(table)
    _print_correlations(result)
    run_dir = result.get("run_dir", "RUN_DIR")
    lines = [f"run: {run_dir}", f"genotype: {result['genotype_file']}"]
    if result.get("best_score") is not None:
        lines.append(f"best trial: {result.get('score')} {result['best_score']:.4g}")
    if result.get("storage"):
        lines.append(f"study: {result.get('study_name', 'selfnas')} in {result['storage']}")
    steps = [
        f"selfnas train --genotype {result['genotype_file']}      # pretrain it from scratch",
        f"selfnas report {run_dir}",
    ]
    if result.get("storage"):
        steps.append(f"optuna-dashboard {result['storage']}      # (pip install optuna-dashboard)")
    _next_steps(*lines, *steps)


def _print_correlations(result: dict) -> None:
    """A study whose trials were measured with labels: how each label-free score ranked them against
    their val accuracy (study.json's ``correlations``), the study's own score first."""
    from selfnas.score_records import score_record

    corr = result.get("correlations") or {}
    names = list(dict.fromkeys(key.split("/")[0] for key in corr))
    if not names:
        return
    score = result.get("score")
    names.sort(key=lambda name: name != score)  # stable: the rest keep study.json's order
    table = Table(
        title="label-free scores vs val accuracy over the trials (Spearman rho; never used to choose)"
    )
    for column in ("score", "better", "rho kNN", "rho linear", "ranks the trials", "trials"):
        table.add_column(column, justify="left" if column in ("score", "ranks the trials") else "right")
    for name in names:
        knn, linear = corr.get(f"{name}/knn_acc") or {}, corr.get(f"{name}/linear_acc") or {}
        direction = score_record(name).direction
        rho = linear.get("spearman")
        shown = f"{name} (this search's score)" if name == score else name
        better = {1: "higher", -1: "lower"}.get(direction, "-")
        table.add_row(
            shown,
            better,
            _rho(knn.get("spearman")),
            _rho(rho),
            _agreement(rho, direction),
            str(linear.get("n", knn.get("n", ""))),
        )
    console.print(table)


def _rho(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def _agreement(rho: float | None, direction: int) -> str:
    """Whether a score whose better side is ``direction`` ranked the trials as their accuracy did."""
    if rho is None or direction == 0 or rho == 0:
        return "-"
    return "with accuracy" if rho * direction > 0 else "against accuracy"


@app.command(cls=_ConfigCommand)
def study(
    space: Annotated[
        str | None,
        Opt(
            help="macro space, or several comma-separated, ranked together: resnet-variants | "
            "mobilenet-variants | resnet-variants,mobilenet-variants"
        ),
    ] = None,
    archs: Annotated[int | None, Opt(help="architectures sampled from each space (plus the default)")] = None,
    scenarios: Annotated[
        str | None, Opt(help=_help("comma-separated scenarios to probe", default="the offline ones"))
    ] = None,
    scenario: Annotated[
        list[str] | None,
        Opt(
            "--scenario",
            metavar="NAME=imagefolder:PATH",
            help="your own scenario, probed too: NAME=imagefolder:PATH[@SIZE], PATH with one subfolder "
            "per class (or train/ and test/ with class subfolders); repeatable",
        ),
    ] = None,
    source: Annotated[
        str | None, Opt(help=_help("source scenario", default="the first of --scenarios"))
    ] = None,
    pretrain_on: Annotated[
        str | None, Opt(help="source: pretrain once on the source | scenario: on each scenario")
    ] = None,
    method: MethodOpt = None,
    epochs: Annotated[
        float | None, Opt(help="pretraining epochs of each architecture (fractions allowed)")
    ] = None,
    seed: Annotated[int | None, _seed("the sampling, the training and the probes")] = None,
    limit: Annotated[
        int | None, Opt(help=_help("use at most this many images per scenario split", default="all"))
    ] = None,
    data_root: DataRootOpt = None,
    device: DeviceOpt = None,
    workers: Annotated[int, Opt(help="processes sharing the architectures")] = 1,
    out: Annotated[Path | None, _out("study", "study")] = None,
    set_: Annotated[
        list[str] | None, _set("optim.lr=0.1, study.scale=full", "a training or a study key")
    ] = None,
    resume: Annotated[bool, _resume("study", "with its own options")] = False,
    overwrite: Annotated[bool, _overwrite("the study")] = False,
    quiet: QuietOpt = False,
) -> None:
    """One network doesn't rule them all: pretrain N sampled architectures (and the default) with
    SSL, linear-probe each on every scenario, rank them and correlate the rankings. Run the same
    command again to continue a killed study."""
    from selfnas.data.scenarios import parse_scenario_definitions
    from selfnas.studies.plan import build_study_config, read_plan

    base = None
    if resume and out is not None and (plan := read_plan(out)) is not None:
        base = plan.config.model_dump(mode="json")  # flags given now must agree with it
    typed = _typed(
        "study", space=space, archs=archs, source=source, pretrain_on=pretrain_on, limit=limit,
        scenarios=None if scenarios is None else [s.strip() for s in scenarios.split(",") if s.strip()],
        user_scenarios=parse_scenario_definitions(scenario) if scenario else None, data_root=data_root,
        method=method, epochs=epochs, seed=seed, device=device,
    )  # fmt: skip
    cfg = build_study_config(base, overrides=[*(set_ or []), *typed])
    from selfnas.api import default_run_dir
    from selfnas.api import study as api_study

    out = out if out is not None or resume else default_run_dir("study")
    summary = api_study(
        cfg, out=out, resume=resume, overwrite=overwrite, workers=workers, quiet=quiet, argv=sys.argv
    )
    from selfnas.studies.outputs import headline_text, ranking_rows

    header, rows = ranking_rows(summary)
    table = Table(title="linear accuracy on test (rank)")
    for h in header:
        table.add_column(h, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(headline_text(summary), soft_wrap=True, markup=False, highlight=False)
    _next_steps(
        f"results: {out / 'summary.json'}, {out / 'study.md'}", f"selfnas report {out}      # the study page"
    )


@app.command(cls=_ConfigCommand)
def table(
    space: Annotated[str | None, Opt(help="heads | cells | resnet-variants")] = None,
    out: Annotated[Path | None, _out("table", "table")] = None,
    export: Annotated[
        Path | None, Opt(help=_help("JSON Lines file of the finished rows", default="OUT/table.jsonl"))
    ] = None,
    archs: Annotated[int | None, Opt(help="architectures sampled from the space (plus the default)")] = None,
    seeds: Annotated[int | None, Opt(help="seeds of the first --seeded-archs architectures")] = None,
    seeded_archs: Annotated[
        int | None, Opt(help="architectures (default first) trained with every seed")
    ] = None,
    threads: Annotated[
        int | None,
        Opt(help=_help("torch threads of this process (several on one table)", default="by free cores")),
    ] = None,
    limit: Annotated[int | None, Opt(help="stop after building this many rows")] = None,
    set_: Annotated[
        list[str] | None, _set("optim.epochs=8, table.space_kwargs={width: 8}", "a training or a table key")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Ground-truth table of a search space: each architecture trained longer and judged with labels,
    with label-free scores at several fidelities. Run the same command again (or in several
    processes at once) to continue."""
    from selfnas.groundtruth.tables import build_table_config

    typed = _typed("table", space=space, archs=archs, seeds=seeds, seeded_archs=seeded_archs, threads=threads)
    cfg = build_table_config(overrides=[*(set_ or []), *typed])
    from selfnas.api import default_run_dir
    from selfnas.api import table as api_table

    out = out if out is not None else default_run_dir(f"table-{cfg.space}")
    threads = cfg.train.run.threads  # --threads or --set run.threads
    result = api_table(cfg, out, export=export, threads=threads, limit=limit, quiet=quiet, argv=sys.argv)
    _next_steps(
        f"{result['finished']} of {result['rows']} rows finished ({result['built']} new): {result['export']}",
        *(
            []
            if result["finished"] == result["rows"]
            else ["run the same command again to continue the table"]
        ),
    )
    if result["failed"]:
        raise SelfnasError(f"{len(result['failed'])} rows failed ({result['failed'][0]}); see {out}/failed/")


@app.command()
def quickstart(
    out: Annotated[Path, Opt("--out", "-o", help="pipeline directory")] = Path("runs/quickstart"),
    space: Annotated[
        str | None,
        Opt(
            help="cells (label-free backbone search over DARTS cells, as CSNAS; the embedded default) | "
            "resnet-variants (per-target ResNet search) | heads (the NASiam head search)"
        ),
    ] = None,
    config: Annotated[
        Path | None, Opt("--config", "-c", help=_help("config file", default="the embedded one"))
    ] = None,
    search_epochs: Annotated[float, Opt(help="--space heads: epochs of the head search")] = 2.0,
    set_: Annotated[list[str] | None, _set("optim.lr=0.1")] = None,
    overwrite: Annotated[bool, Opt(help="start again from scratch")] = False,
    quiet: QuietOpt = False,
) -> None:
    """The main job on the embedded default (Fashion-MNIST, CPU, minutes): a label-free backbone
    search -> pretrain the find, the hand-crafted default at equal feature width and a random
    architecture of the space at equal budget -> kNN + linear probe -> both verdicts -> report.
    Run it again to resume after a kill."""
    from importlib.resources import files

    from selfnas.config import build_config

    if space not in (None, "cells", "resnet-variants", "heads"):
        raise SelfnasError(f"--space {space}: pick cells, resnet-variants or heads")
    embedded = "quickstart.yaml" if space == "heads" else "quickstart_backbone.yaml"
    path = config or Path(str(files("selfnas") / "configs" / embedded))
    cfg = build_config(path, list(set_ or []) + _typed("quickstart", space=space))
    _lock_folder(out)  # the pipeline's own files; each stage also locks its run
    if cfg.search is None or cfg.search.space == "heads":
        _quickstart_heads(cfg, out, search_epochs, overwrite, quiet)
    else:
        _quickstart_backbone(cfg, out, overwrite, quiet)
    from selfnas.report.write import write_report

    html, _ = write_report(out)
    found = "found" if (out / "found").exists() else "search"
    _next_steps(
        f"results: {out / 'summary.json'}",
        f"report:  {html}",
        f"selfnas export {out}/{found} --out {out}/export      # the found model for use without selfnas",
    )


def _quickstart_backbone(cfg: Any, out: Path, overwrite: bool, quiet: bool) -> None:
    from selfnas.pipeline import compare_backbones

    summary = compare_backbones(cfg, out, overwrite=overwrite, quiet=quiet)
    title = (
        f"{summary['method']} on {summary['data']}: found vs default vs random backbone (held-out, one seed)"
    )
    table = Table(title=title)
    table.add_column("backbone")
    for split in ("val", "test"):
        table.add_column(f"kNN {split}", justify="right")
        table.add_column(f"linear {split}", justify="right")
    table.add_column("params", justify="right")
    table.add_column("FLOPs", justify="right")
    labels = {"found": f"found ({summary['space']} search)", "default": "hand-crafted, equal width",
              "random": "random of the space"}  # fmt: skip
    for name, label in labels.items():
        row = summary[name]
        cells = [percent(row[probe].get(split)) for split in ("val", "test") for probe in ("knn", "linear")]
        table.add_row(label, *cells, f"{row['params']:,}", f"{row['flops'] / 1e6:.1f}M")
    console.print(table)
    for key in ("default", "random"):
        if summary["verdict"].get(key):
            console.print(
                f"verdict: {summary['verdict'][key]}", soft_wrap=True, markup=False, highlight=False
            )


def _quickstart_heads(cfg: Any, out: Path, search_epochs: float, overwrite: bool, quiet: bool) -> None:
    from selfnas.pipeline import compare_heads

    summary = compare_heads(cfg, out, search_epochs=search_epochs, overwrite=overwrite, quiet=quiet)
    table = Table(title=f"{summary['method']} on {summary['data']}: found vs hand-crafted heads (held-out)")
    table.add_column("heads")
    for split in ("val", "test"):
        table.add_column(f"kNN {split}", justify="right")
        table.add_column(f"linear {split}", justify="right")
    for name in ("found", "hand"):
        row = summary[name]
        cells = [percent(row[probe].get(split)) for split in ("val", "test") for probe in ("knn", "linear")]
        table.add_row("found (DARTS)" if name == "found" else "hand-crafted", *cells)
    console.print(table)
    ops = " -> ".join(layer["op"] for layer in summary["genotype"]["projector"]["layers"])
    console.print(f"found projector: {ops}", soft_wrap=True, markup=False, highlight=False)
    sizes = summary.get("sizes", {})
    if sizes:
        console.print(
            "head parameters: found {:,}, hand-crafted {:,}".format(
                sizes["found"]["head_params"], sizes["hand"]["head_params"]
            ),
            markup=False,
            highlight=False,
        )
    if summary.get("verdict"):
        console.print(f"verdict: {summary['verdict']}", soft_wrap=True, markup=False, highlight=False)
    if summary.get("decision_warning"):
        console.print(
            f"warning: {summary['decision_warning']}", soft_wrap=True, markup=False, highlight=False
        )


@app.command(cls=_ConfigCommand)
def finetune(
    run_dir: Annotated[
        Path, typer.Argument(help="SSL run whose pretrained backbone is fine-tuned", metavar="RUN_DIR")
    ],
    data: Annotated[str | None, Opt(help=_help("labeled dataset or scenario", default="the run's"))] = None,
    labels: Annotated[str | None, Opt(help="labels used: a share (1%, 10%, 100%) or N per class")] = None,
    out: Annotated[Path | None, _out("finetune")] = None,
    set_: Annotated[list[str] | None, _set("finetune.epochs=10", "a finetune or data key")] = None,
    resume: Annotated[bool, _resume("fine-tuning")] = False,
    overwrite: Annotated[bool, _overwrite()] = False,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune a pretrained backbone end to end with few labels (a seeded, class-balanced subset,
    recorded in the run): val selects the epoch, test reports."""
    from selfnas.api import finetune as api_finetune

    result = api_finetune(run_dir, data=data, labels=labels, out=out, resume=resume, overwrite=overwrite,
                          quiet=quiet, overrides=list(set_ or []), argv=sys.argv)  # fmt: skip
    _print_result(result)
    if _main_process():
        for line in finetune_lines(result, _read_eval(run_dir)):
            console.print(line, soft_wrap=True, markup=False, highlight=False)
        done = result.get("run_dir", "RUN_DIR")
        _next_steps(f"run: {done}", f"selfnas report {done}", f"selfnas export {done} --out {done}/export")


def finetune_lines(result: dict, source_eval: dict | None) -> list[str]:
    """What a fine-tuning used and what to compare it with: the labels (how many, of how many train
    images, per class), the frozen linear probe fitted on those same labels (the head's start)
    beside the fine-tuned accuracy, and, when the source run was evaluated, how many labels its
    probe used (so its accuracy is not read as the same comparison)."""
    section = result.get("finetune") or {}
    labels = section.get("labels") or {}
    if not labels:
        return []
    n, of = labels.get("n"), labels.get("of")
    counts = sorted(set((labels.get("per_class") or {}).values()))
    each = f"{counts[0]} per class" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} per class"
    lines = [
        f"labels used: {n:,} of the {of:,} labeled training images ({labels.get('budget')}, {each}, "
        f"seed {labels.get('seed')}; indices in label_subset.json)"
    ]
    tuned = f"val {_pct(section.get('val'))}, test {_pct(section.get('test'))}"
    if section.get("probe_val") is not None:
        lines.append(
            f"same {n:,} labels: frozen linear probe val {_pct(section['probe_val'])} (the head's start), "
            f"fine-tuned {tuned}"
        )
    else:
        lines.append(f"same {n:,} labels: fine-tuned {tuned} (head_init=random: no frozen probe was fitted)")
    probe = (source_eval or {}).get("linear") or {}
    if probe and source_eval and source_eval.get("n_train"):
        lines.append(
            f"not the same comparison: the source run's eval.json probe used {source_eval['n_train']:,} "
            f"labels (test {_pct(probe.get('test'))})"
        )
    return lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _read_eval(run_dir: Path) -> dict | None:
    """A run's eval.json, or None when it has none (not evaluated) or it cannot be read."""
    try:
        value = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


#: the default of ``selfnas eval``'s limits
_RUN_SUBSET = "run.eval_*_limit, else the run's data.train_limit, else all"


@app.command("eval", cls=_Command)
def eval_(
    target: Annotated[
        Path, typer.Argument(help="run directory or a .safetensors checkpoint in one", metavar="TARGET")
    ],
    data: Annotated[
        str | None, Opt(help=_help("labeled dataset or scenario to evaluate on", default="the run's"))
    ] = None,
    data_root: DataRootOpt = None,
    device: Annotated[str, Opt(help="auto | cpu | cuda[:N]")] = "auto",
    linear: Annotated[bool, Opt(help="also run the linear probe")] = True,
    train_limit: Annotated[
        int | None,
        Opt(help=_help("kNN bank / probe training images: a seeded subset", default=_RUN_SUBSET)),
    ] = None,
    test_limit: Annotated[
        int | None, Opt(help=_help("images of each held-out split", default=_RUN_SUBSET))
    ] = None,
    all_images: Annotated[
        bool, Opt(help="do not cap the evaluation at the run's training subset (data.train_limit)")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """kNN (k=200) and linear probe of the frozen backbone on the held-out splits: of any run, SSL,
    supervised or fine-tuned (whose own classifier's accuracy stays in eval.json, side by side). A run
    trained on a subset (--train-limit N) is evaluated on N images of each split unless told otherwise;
    eval.json says which limits applied and why."""
    from selfnas.evaluation import evaluate

    _lock_run(target)  # eval.json is written: one writer per run
    result = evaluate(
        target, data=data, data_root=data_root, device=device, linear=linear,
        train_limit=train_limit, test_limit=test_limit, quiet=quiet or None, follow_run=not all_images,
    )  # fmt: skip
    _print_result(result)
    run_dir = target if target.is_dir() else target.parent
    _next_steps(f"written: {run_dir / 'eval.json'}", f"selfnas report {run_dir}")


@app.command(cls=_Command)
def report(
    run_dir: Annotated[
        Path,
        typer.Argument(
            help="run directory, or a directory of runs (search/, found/, hand/)", metavar="RUN_DIR"
        ),
    ],
) -> None:
    """Write RUN_DIR/report.html (one self-contained file, plots embedded) and a short RUN_DIR/report.md."""
    from selfnas.report.write import write_report

    html, md = write_report(run_dir)
    _next_steps(f"report: {html}", f"summary: {md}", f"open {html} in a browser (one file: plots embedded)")


@app.command("export", cls=_Command)
def export_(
    run_dir: Annotated[Path, typer.Argument(help="run directory to export", metavar="RUN_DIR")],
    out: Annotated[Path, Opt("--out", "-o", help="folder for the export (created if missing)")],
) -> None:
    """Export the pretrained backbone: a torch.export program (.pt2), ONNX (checked against torch), clean
    safetensors, config, the heads' genotype (search runs and runs pretrained from a genotype), model card."""
    from selfnas.export import export_run

    _lock_run(run_dir)
    result = export_run(run_dir, out)
    c, s, _ = result["input_shape"]
    console.print(
        f"exported to {result['out_dir']}: {', '.join(result['files'])}", soft_wrap=True, markup=False
    )
    console.print(
        f"load without selfnas: torch.export.load({str(out / 'backbone.pt2')!r}).module() maps normalised "
        f"N x {c} x {s} x {s} images to N x {result['feature_dim']} features (see MODEL_CARD.md)",
        soft_wrap=True,
        markup=False,
    )


@app.command(cls=_Command)
def draw(
    target: Annotated[Path, typer.Argument(help="run directory or genotype.json", metavar="TARGET")],
    out: Annotated[
        Path | None, Opt("--out", "-o", help="output prefix: writes PREFIX.svg and PREFIX.png")
    ] = None,
) -> None:
    """Draw an architecture: a genotype's heads, or a run's backbone stages and heads."""
    from selfnas.report.draw import draw as draw_target

    prefix = out or (target / "plots" / "architecture" if target.is_dir() else target.with_suffix(""))
    for path in draw_target(target, prefix):
        console.print(str(path), soft_wrap=True, markup=False)


@app.command(cls=_Command)
def info(
    run_dir: Annotated[Path, typer.Argument(help="run directory", metavar="RUN_DIR")],
    as_json: Annotated[bool, Opt("--json", help="everything as JSON")] = False,
) -> None:
    """What a run holds: command, seed, versions, config, status, scores and found heads."""
    from selfnas.info import format_info, run_info

    result = run_info(run_dir)
    if as_json:
        console.print_json(json.dumps(result))
    else:
        console.print(format_info(result), soft_wrap=True, highlight=False, markup=False)


@app.command("import-genotype", cls=_Command)
def import_genotype(
    source: Annotated[
        str,
        typer.Argument(
            help="a published name (DARTS_V1, DARTS_V2), a file, or the text of a DARTS Genotype(...) "
            "or a NASiam head genotype",
            metavar="TEXT_OR_FILE",
        ),
    ],
    out: Annotated[Path, Opt("--out", "-o", help="genotype.json to write")] = Path("genotype.json"),
    backbone_dim: Annotated[int, Opt(help="NASiam heads: the backbone's feature width")] = 512,
    hidden_dim: Annotated[int, Opt(help="NASiam heads: the hidden width")] = 512,
    out_dim: Annotated[
        int | None,
        Opt(help=_help("NASiam heads: the output width", default="2048 SimSiam, 128 MoCo / SimCLR")),
    ] = None,
) -> None:
    """Read a published genotype (parsed as data, never run) into a validated selfnas genotype.json."""
    from selfnas.models.genotype_import import import_genotype_to_file

    written = import_genotype_to_file(
        source, out, backbone_dim=backbone_dim, out_dim=out_dim, hidden_dim=hidden_dim
    )
    what = "cells" if written.get("space") == "cells" else f"{written.get('method') or ''} heads".strip()
    _next_steps(f"written: {out} ({what})", f"selfnas train --genotype {out}      # pretrain it from scratch")


@app.command()
def datasets() -> None:
    """List the names --data takes: datasets (`name`, `name:PATH`, `name@SIZE`), then scenarios."""
    from selfnas.data import data_names, describe_data

    table = Table("name", "description")
    for name in data_names():
        table.add_row(name, describe_data(name))
    console.print(table)


@app.command()
def backbones() -> None:
    """List the backbone names."""
    from selfnas.models.backbones import BACKBONES

    _print_registry(BACKBONES)


def _print_registry(registry: Registry) -> None:
    table = Table("name", "description")
    for name in registry.names():
        table.add_row(name, registry.describe(name))
    console.print(table)


def _lock_run(target: Path) -> None:
    """Hold the lock of the run that ``target`` (a run directory or a weights file in one) belongs
    to until the command ends; refused in one line while another process writes that run."""
    from selfnas.build import find_run

    if target.is_dir() or target.is_file():
        _hold(find_run(target)[0])


def _lock_folder(folder: Path) -> None:
    from selfnas.rundir import RunDir

    if folder.exists() and not folder.is_dir():
        raise SelfnasError(f"{folder} exists and is not a directory; choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    _hold(RunDir(folder))


#: the run directories a command holds locked until it ends (released by :func:`main`, else at exit)
_HELD: list[Any] = []


def _hold(run: Any) -> None:
    """Lock ``run`` until the command ends: the reference kept here keeps the lock alive."""
    run.lock()
    _HELD.append(run)


def _release_held() -> None:
    while _HELD:
        _HELD.pop().release()


def _next_steps(*lines: str) -> None:
    """The last lines of a command: where its results are and the commands to run next (commands
    start with ``selfnas`` or another program's name and are prefixed with ``next:``)."""
    for line in lines:
        shown = f"next: {line}" if line.split(" ", 1)[0] in ("selfnas", "optuna-dashboard") else line
        console.print(shown, soft_wrap=True, markup=False, highlight=False)


def _main_process() -> bool:
    """False on the other ranks of a torchrun launch: only rank 0 prints results."""
    from selfnas.distributed import is_main

    return is_main()


def _print_result(result: dict) -> None:
    if not _main_process():
        return
    if not any(key in result for key in ("knn", "supervised", "finetune")):
        console.print_json(json.dumps(result))
        return
    header, rows = eval_rows(result)
    table = Table(title=f"evaluation on {result.get('data')}")
    table.add_column(header[0])
    for split in header[1:]:
        table.add_column(split, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _out_of_memory(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text


def main() -> None:
    try:
        _command()
    finally:
        _release_held()


def _command() -> None:
    try:
        app()
    except SelfnasError as exc:
        print("error: " + " ".join(str(exc).splitlines()), file=sys.stderr)  # always one line
        sys.exit(2)
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        print(
            "error: out of memory building or training the model; lower optim.batch_size or the "
            "model's size (widths, depths, head dims)",
            file=sys.stderr,
        )
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; continue with --resume", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # a write the machine refused (full disk, read-only, ...): one line
        from selfnas.faults import message, refused_write

        refused = refused_write(exc)
        if refused is None:
            raise
        print("error: " + message(*refused, sys.argv), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
