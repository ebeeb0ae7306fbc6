"""How the report words a run's training protocol, and its results table.

Three protocols write run directories: self-supervised pretraining (judged by the frozen kNN and
linear probe of ``selfnas eval``), supervised training from scratch and fine-tuning on few labels
(judged by their own classifier: eval.json's ``supervised`` / ``finetune`` section). ``selfnas
eval`` adds the frozen probes to the latter two as well, and a fine-tuning's source run holds those
of the backbone before fine-tuning, so :func:`results_table` puts the protocols side by side: val
then test columns, nothing selected on test. The HTML and the Markdown report render the same table.

Everything here returns plain strings built from untrusted files: the renderers escape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from selfnas.render.tables import (
    NOT_SCORES,
    SPLITS,
    eval_rows,
    finite_number,
    knn_k,
    percent,
    split_order,
)
from selfnas.report.facts import FINETUNE, SSL, SUPERVISED, RunFacts


@dataclass(frozen=True)
class ResultsTable:
    """The Results section: a sentence, the table, and notes on how to read it."""

    intro: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def _number(value: Any) -> str:
    number = finite_number(value)
    return str(value) if number is None else format(number, "g")


def _count(value: Any) -> str | None:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else None


def eval_context(evaluation: dict[str, Any]) -> str:
    """``"on synthetic: 461 training images, 16 features, weights model.safetensors"``."""
    parts = [
        template.format(evaluation[key])
        for key, template in (("n_train", "{} training images"), ("feature_dim", "{} features"),
                              ("weights", "weights {}"))
        if key in evaluation
    ]  # fmt: skip
    return f"on {evaluation.get('data', '?')}" + (": " + ", ".join(parts) if parts else "")


# -- the setup line -----------------------------------------------------------------------


def _sgd(section: dict[str, Any]) -> str:
    """``"SGD (Nesterov momentum 0.9), lr 0.05 cosine to 0, weight decay 0"``."""
    momentum = "Nesterov momentum" if section.get("nesterov") else "momentum"
    text = f"SGD ({momentum} {_number(section.get('momentum', '?'))}), lr {_number(section.get('lr', '?'))}"
    text += f" cosine to 0, weight decay {_number(section.get('weight_decay', '?'))}"
    if finite_number(section.get("grad_clip")) is not None:
        text += f", gradient clip {_number(section['grad_clip'])}"
    return text


def _regularisers(section: dict[str, Any]) -> str:
    """The DARTS aids a supervised run used, or that it used none of them."""
    on = []
    if (finite_number(section.get("cutout")) or 0) > 0:
        on.append(f"cutout {_number(section['cutout'])} px")
    if (finite_number(section.get("drop_path")) or 0) > 0:
        on.append(f"drop-path {_number(section['drop_path'])}")
    if section.get("auxiliary") is True:
        on.append(f"auxiliary head (weight {_number(section.get('auxiliary_weight', '?'))})")
    if (finite_number(section.get("label_smoothing")) or 0) > 0:
        on.append(f"label smoothing {_number(section['label_smoothing'])}")
    return ", ".join(on) if on else "no cutout, drop-path, auxiliary head or label smoothing"


def _trained_section(facts: RunFacts) -> dict[str, Any]:
    """eval.json's ``supervised`` / ``finetune`` section of the run, ``{}`` before it is written."""
    section = (facts.evaluation or {}).get(facts.protocol)
    return section if isinstance(section, dict) else {}


def _label_budget(facts: RunFacts) -> str:
    """``"10% of the train labels (48 images: a seeded, class-balanced subset, seed 0)"``."""
    config, recorded = facts.section(FINETUNE), _trained_section(facts).get("labels")
    recorded = recorded if isinstance(recorded, dict) else {}
    budget = recorded.get("budget", config.get("labels", "?"))
    share = f"{budget} of the train labels" if str(budget).endswith("%") else f"{budget} labels per class"
    seed = recorded.get("seed", config.get("label_seed"))
    seed = facts.section("run").get("seed", "?") if seed is None else seed
    n = _count(recorded.get("n"))
    return f"{share} ({n + ' images: ' if n else ''}a seeded, class-balanced subset, seed {seed})"


def labeled_setup_line(facts: RunFacts) -> str | None:
    """The setup of a run trained with labels, naming its protocol first; None for an SSL run.

    ``"supervised training from scratch on synthetic: backbone resnet_small, every train label,
    2 epochs, batch 64, SGD (momentum 0.9), lr 0.025 cosine to 0, ..., seed 0"``."""
    kind = facts.protocol
    if kind == SSL:
        return None
    section, data = facts.section(kind), facts.section("data").get("name", "?")
    backbone = facts.section("model").get("backbone", "?")
    budget = [f"{_number(section.get('epochs', '?'))} epochs", f"batch {section.get('batch_size', '?')}"]
    seed = f"seed {facts.section('run').get('seed', '?')}"
    if kind == SUPERVISED:
        limit = facts.section("data").get("train_limit")
        labels = f"labels of {limit} train images (data.train_limit)" if limit else "every train label"
        head = f"supervised training from scratch on {data}: backbone {backbone}, {labels}"
        return ", ".join([head, *budget, _sgd(section), _regularisers(section), seed])
    source = section.get("source") or "?"
    head = f"fine-tuning on {data} of the backbone pretrained by {source}: backbone {backbone}"
    ratio = _number(section.get("backbone_lr_ratio", "?"))
    start = {
        "probe": ["head started at the frozen linear probe (LP-FT)"],
        "random": ["head started at random"],
    }
    parts = [head, _label_budget(facts), *budget, _sgd(section), f"backbone LR x{ratio}"]
    parts += start.get(str(section.get("head_init")), [])
    return ", ".join([*parts, "val selects the epoch", seed])


# -- the results table --------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    protocol: str
    backbone: str
    labels: str
    scores: dict[str, Any]


def _frozen(evaluation: dict[str, Any] | None, backbone: str) -> list[_Row]:
    """The frozen kNN and linear-probe rows of an eval.json (none when it has no frozen scores)."""
    evaluation = evaluation or {}
    knn, linear = evaluation.get("knn"), evaluation.get("linear")
    n = _count(evaluation.get("n_train"))
    every = f"all {n}" if n else "every train label"
    rows = []
    if isinstance(knn, dict) and knn:
        rows.append(_Row(f"frozen kNN top-1 (k={knn_k(evaluation)})", backbone, every + " (bank)", knn))
    if isinstance(linear, dict) and linear:
        wd = linear.get("weight_decay")
        label = "frozen linear probe" + (f" (weight decay {_number(wd)})" if wd is not None else "")
        rows.append(_Row(label, backbone, every, linear))
    return rows


def _trained_row(facts: RunFacts) -> _Row | None:
    """The run's own classifier: its accuracy per held-out split, and the labels it trained on."""
    section = _trained_section(facts)
    if not section:
        return None
    scores = {s: section.get(s) for s in SPLITS}  # the section's other numbers are not accuracies
    n = _count(section.get("n_train", (facts.evaluation or {}).get("n_train")))
    if facts.protocol == SUPERVISED:
        return _Row(
            "supervised classifier, trained from scratch", "this run's", f"all {n}" if n else "all", scores
        )
    labels = section.get("labels") if isinstance(section.get("labels"), dict) else {}
    budget = labels.get("budget", facts.section(FINETUNE).get("labels", "?"))
    n = _count(labels.get("n"))
    return _Row(
        "fine-tuned end to end, linear head",
        "pretrained, then fine-tuned",
        f"{budget}" + (f" ({n})" if n else ""),
        scores,
    )


def _comparable(facts: RunFacts, frozen: dict[str, Any]) -> str | None:
    """Why the source's frozen scores cannot stand beside the fine-tuned ones, or None when they can:
    the same data and the same held-out split sizes."""
    section, evaluation = _trained_section(facts), facts.evaluation or {}
    data = section.get("data", evaluation.get("data", facts.section("data").get("name")))
    held_out = section.get("n_held_out", evaluation.get("n_held_out"))
    if frozen.get("data") != data:
        return f"it was evaluated on {frozen.get('data', '?')}, this run on {data}"
    if held_out is not None and frozen.get("n_held_out") != held_out:
        theirs, ours = _sizes(frozen.get("n_held_out")), _sizes(held_out)
        return f"its held-out images ({theirs}) differ from this run's ({ours})"
    return None


def _source_rows(facts: RunFacts, notes: list[str]) -> list[_Row]:
    """The frozen rows of the backbone before fine-tuning (the source run's eval.json), or a note
    saying why there are none and what to run."""
    recorded = facts.section(FINETUNE).get("source") or "the source run"
    if facts.source is None:
        notes.append(
            f"The source run {recorded} was not found from here, so its frozen scores are not shown."
        )
        return []
    name = facts.source.path.name
    evaluation = facts.source_evaluation or {}
    rows = _frozen(evaluation, f"pretrained ({name}), frozen")
    if not rows:
        notes.append(f"The source run has no frozen evaluation yet: selfnas eval {facts.source.path}")
        return []
    why = _comparable(facts, evaluation)
    if why is not None:
        data = facts.section("data").get("name", "this run's data")
        notes.append(
            f"The source run's frozen scores are not shown: {why}; evaluate it on this run's data: "
            f"selfnas eval {facts.source.path} --data {data}"
        )
        return []
    return rows


def _sizes(held_out: Any) -> str:
    """``{"val": 51, "test": 128}`` -> ``"val 51, test 128"``."""
    if not isinstance(held_out, dict):
        return "?"
    return ", ".join(f"{k} {held_out[k]}" for k in split_order(held_out))


def _labeled_notes(facts: RunFacts, frozen_rows: bool, own_frozen: bool) -> list[str]:
    """How to read a labeled run's table: what selected the classifier's weights, which labels
    each row used, and how to add the frozen rows this run lacks."""
    section, path = _trained_section(facts), facts.run.path
    if facts.protocol == SUPERVISED:
        notes = ["The supervised classifier is measured with its final weights; nothing is selected on test."]
    else:
        epoch = section.get("epoch")
        kept = (
            f"the weights of epoch {epoch}, the best on val" if epoch is not None else "its best epoch on val"
        )
        notes = [f"Fine-tuning keeps {kept}; test only reports."]
        if frozen_rows:
            notes.append("The frozen probes fit every train label; fine-tuning saw only its label budget.")
    measured, frozen_on = section.get("n_held_out"), (facts.evaluation or {}).get("n_held_out")
    if own_frozen and measured is not None and measured != frozen_on:
        notes.append(
            f"The classifier was measured on {_sizes(measured)} held-out images, "
            f"the frozen probes on {_sizes(frozen_on)}."
        )
    if not own_frozen:
        notes.append(
            f"The frozen kNN and linear probe of this run's backbone are not measured yet: "
            f"selfnas eval {path} adds them, to compare its features with a self-supervised backbone's."
        )
    return notes


def _scored(scores: dict[str, Any]) -> set[str]:
    return {k for k, v in scores.items() if k not in NOT_SCORES and finite_number(v) is not None}


def results_table(facts: RunFacts) -> ResultsTable | None:
    """The Results section of a run with an eval.json (None without one).

    An SSL run: the frozen kNN and linear probe. A run trained with labels: one row per protocol,
    with the backbone it measures and the labels it used: the frozen probes of the source backbone
    (fine-tuning), the run's own classifier, and the frozen probes of this run's backbone once
    ``selfnas eval`` measured them."""
    evaluation = facts.evaluation
    if evaluation is None:
        return None
    if facts.protocol == SSL:
        header, rows = eval_rows(evaluation)
        return ResultsTable("Frozen-backbone evaluation " + eval_context(evaluation), header, rows)
    notes: list[str] = []
    trained = _trained_row(facts)
    if facts.protocol == SUPERVISED:
        own = _frozen(evaluation, "this run's (supervised), frozen")
        ordered = [*own, *([trained] if trained else [])]
    else:
        own = _frozen(evaluation, "this run's (fine-tuned), frozen")
        ordered = [*_source_rows(facts, notes), *([trained] if trained else []), *own]
    notes += _labeled_notes(facts, len(ordered) > (trained is not None), bool(own))
    splits = split_order(set().union(set(), *(_scored(r.scores) for r in ordered)))
    rows = [[r.protocol, r.backbone, r.labels, *(percent(r.scores.get(s)) for s in splits)] for r in ordered]
    intro = f"Accuracy by protocol on {evaluation.get('data', '?')}, held-out images: "
    intro += _sizes(evaluation.get("n_held_out"))
    return ResultsTable(intro, ["protocol", "backbone", "labels", *splits], rows, notes)
