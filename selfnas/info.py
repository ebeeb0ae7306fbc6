"""What a run directory holds, gathered in one dict and told in a few lines.

Only the run's own files are read (no model is built, no data is loaded), so it is
instant on any run, finished or not; damaged files are listed as problems, first.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import yaml

from selfnas.build import genotype_file
from selfnas.errors import RunDirError
from selfnas.render.tables import eval_lines
from selfnas.report.problems import read_metrics, run_problems
from selfnas.rundir import ACTIVE_STATES, RunDir


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def eval_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The accuracies of an ``eval.json`` (kNN and linear probe per held-out split), nothing else."""
    if not result:
        return {}
    linear = result.get("linear", {})
    summary: dict[str, Any] = {"data": result.get("data"), "feature_dim": result.get("feature_dim")}
    if "knn" in result or not any(k in result for k in ("supervised", "finetune")):
        summary["knn"] = result.get("knn", {})
    if "knn_k" in result:
        summary["knn_k"] = result["knn_k"]  # smaller than 200 when the bank is
    if linear:
        summary["linear"] = {k: v for k, v in linear.items() if k in ("val", "test")}
        summary["linear_weight_decay"] = linear.get("weight_decay")
    for key in ("supervised", "finetune"):  # trained with labels: their accuracies and label budget
        section = result.get(key)
        if isinstance(section, dict):
            summary[key] = {k: v for k, v in section.items() if k in ("val", "test", "labels", "data")}
    return summary


def run_kind(config: dict[str, Any]) -> str:
    """``search``, ``finetune`` (a pretrained backbone fine-tuned on labels), ``supervised`` (trained
    from scratch on labels) or ``train`` (self-supervised pretraining), from a run's config."""
    for kind in ("search", "finetune", "supervised"):
        if config.get(kind):
            return kind
    return "train"


def run_info(run_dir: str | Path) -> dict[str, Any]:
    """Provenance, status, resolved config, eval summary, genotype (or None), the last epoch line,
    and the run's problems (damaged files, no evaluation, a live process writing it). A status of
    ``running`` or ``evaluating`` that no live process holds reads ``interrupted`` (its recorded
    state kept as ``recorded_state``); ``owner`` is the process that holds the run, if any."""
    run = RunDir(run_dir)
    if not run.path.is_dir() or not run.is_run():
        raise RunDirError(f"{run.path} is not a selfnas run directory (no config.yaml); pass a run's --out")
    problems: list[str] = []
    try:
        config = yaml.safe_load(run.config.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        config, problems = {}, ["config.yaml is missing: the run cannot be resumed or evaluated"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        config, problems = {}, ["config.yaml is unreadable or not valid YAML"]
    config = config if isinstance(config, dict) else {}
    found = genotype_file(run)
    records, damaged = read_metrics(run.metrics)
    epochs = [r for r in records if r.get("kind") == "epoch"]
    last_epoch = {k: v for k, v in epochs[-1].items() if k != "alphas"} if epochs else {}
    status = run.read_status()
    owner = run.owner()
    state = status.get("state")
    if state in ACTIVE_STATES and owner is None:  # recorded as running, but nobody holds the run
        status = {**status, "state": "interrupted", "recorded_state": state}
    evaluation = _json(run.eval)
    problems += damaged + run_problems(run, config, run.read_status(), run.eval.is_file())
    return {
        "path": str(run.path),
        "kind": run_kind(config),
        "status": status,
        "owner": owner,
        "problems": problems,
        "provenance": _json(run.provenance),
        "config": config,
        "eval": eval_summary(evaluation),
        "genotype": _json(found) if found is not None else None,
        "last_epoch": last_epoch,
        "weights": run.model.is_file(),
    }


def head_chain(head: dict[str, Any] | None) -> str:
    """``{"layers": [{"op": "linear_bn_relu", "dim": 64}, ...]}`` -> ``linear_bn_relu(64) -> ...``."""
    if not head:
        return "-"
    return " -> ".join(f"{layer['op']}({layer['dim']})" for layer in head["layers"])


def command_line(argv: list[str]) -> str:
    """Shell-quoted command, leaving a scrubbed ``~/`` unquoted so that it still expands when pasted."""

    def quote(arg: str) -> str:
        return "~/" + shlex.quote(arg[2:]) if arg.startswith("~/") and arg[2:] else shlex.quote(arg)

    return " ".join(quote(a) for a in argv)


def _budget(config: dict[str, Any]) -> str:
    """``"10 epochs x batch 256"`` of the phase the run trained: fine-tuning, supervised, or SSL."""
    for key, what in (
        ("finetune", " (fine-tuning)"),
        ("supervised", " (supervised, from scratch)"),
        ("optim", ""),
    ):
        section = config.get(key)
        if isinstance(section, dict) and isinstance(section.get("epochs"), int | float):
            return f"{section['epochs']:g} epochs x batch {section.get('batch_size', '-')}{what}"
    return "-"


def _method(kind: str, method: dict[str, Any]) -> str:
    """The SSL method; a run trained with labels has none (its config keeps the method defaults)."""
    if kind == "supervised":
        return "none: trained from scratch with labels"
    if kind == "finetune":
        return f"none: fine-tuned with labels (the source was pretrained with {method.get('name', '?')})"
    return str(method.get("name", "-"))


def format_info(info: dict[str, Any]) -> str:
    """Several ``key  value`` lines; the home directory is written as ``~``."""
    config, status, prov = info["config"], info["status"], info["provenance"]
    data, model, method, optim = (config.get(k, {}) for k in ("data", "model", "method", "optim"))
    state = status.get("state", "unknown")
    if "step" in status:
        state += f", step {status['step']}/{status.get('total_steps', '?')}"
    rows = [("problem", problem) for problem in info.get("problems", [])]
    rows += [
        ("run", f"{info['path']}  ({info['kind']}, {state})"),
        ("command", command_line(prov["command"]) if prov.get("command") else "-"),
        ("seed", str(prov.get("seed", config.get("run", {}).get("seed", "-")))),
        ("versions", ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items()) or "-"),
        ("platform", prov.get("platform", "-")),
        ("data", str(data.get("name", "-"))),
        ("method", _method(info["kind"], method)),
        ("backbone", f"{model.get('backbone', '-')} {json.dumps(model.get('backbone_kwargs') or {})}"),
        ("budget", _budget(config)),
    ]
    if info["kind"] == "finetune":
        rows.insert(-1, ("source", str((config.get("finetune") or {}).get("source") or "-")))
    last = info["last_epoch"]
    if last:
        line = f"epoch {last.get('epoch')}"
        if isinstance(last.get("loss"), int | float):
            line += f": loss {last['loss']:.4f}"
        if isinstance(last.get("val_acc"), int | float):  # a run trained with labels
            line += f", val accuracy {100 * last['val_acc']:.2f}%"
        if "knn_val" in last:
            run_cfg = config.get("run") if isinstance(config.get("run"), dict) else {}
            bank = run_cfg.get("knn_bank", 10000)
            line += f", kNN monitor (val, bank of at most {bank:,} train images) {100 * last['knn_val']:.2f}%"
        rows.append(("last epoch", line))
    evaluation = info["eval"]
    if evaluation:
        rows += eval_lines(evaluation)
    heads = info["genotype"] or method  # found heads, or the explicit heads a run was trained with
    for head in ("projector", "predictor"):
        if heads.get(head):
            rows.append((head, head_chain(heads[head])))
    for warning in status.get("warnings", []):
        rows.append(("warning", warning))
    if status.get("message"):
        rows.append(("message", status["message"]))
    rows.append(("weights", "model.safetensors" if info["weights"] else "none yet"))
    width = max(len(key) for key, _ in rows)
    text = "\n".join(f"{key:<{width}}  {value}" for key, value in rows)
    home = str(Path.home())
    return text.replace(home, "~") if home not in ("/", "") else text
