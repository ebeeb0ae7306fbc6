"""Plain-text summaries of a run that the HTML and the Markdown report share.

Everything here returns plain strings built from untrusted files: the renderers escape.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from selfnas.models.head_ops import PARAMETER_FREE_HEAD_OPS
from selfnas.render.tables import eval_splits, finite_number, split_order, trained_sections
from selfnas.render.tables import percent as pct  # an accuracy cell, for the report's other tables
from selfnas.render.verdict import Verdict, compare, record_decision_warning
from selfnas.report.facts import SSL, RunFacts
from selfnas.report.protocols import labeled_setup_line
from selfnas.rundir import ACTIVE_STATES

SHORT_OPS = {"identity": "id", "max_pool_3": "max", "avg_pool_3": "avg"}


def num(value: Any, digits: int = 4) -> str:
    number = finite_number(value)
    if number is not None:
        return f"{number:.{digits}g}"
    return "-" if value is None else str(value)


def ordered_heads(names: Any) -> list[str]:
    """Head names in data-flow order: projector, predictor, then any other."""
    flow = ("projector", "predictor")
    return sorted((str(n) for n in names), key=lambda n: (flow.index(n) if n in flow else len(flow), n))


def short_op(op: Any) -> str:
    return SHORT_OPS.get(str(op), str(op).removeprefix("linear_bn_"))


# -- state and progress ----------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """How far a run got: ``state`` from status.json, the furthest step reached, the plan."""

    state: str
    step: int | None
    total: int | None
    message: str | None
    updated: str | None

    @property
    def fraction(self) -> float | None:
        if self.step is None or not self.total:
            return None
        return min(1.0, self.step / self.total)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def progress(facts: RunFacts) -> Progress:
    """A run recorded as running or evaluating that no live process holds was killed: it reads
    ``interrupted`` (see :meth:`selfnas.rundir.RunDir.state`)."""
    status = facts.status
    reached = [
        s for s in [_int(status.get("step")), *(_int(r.get("step")) for r in facts.steps)] if s is not None
    ]
    message = status.get("message")
    updated = status.get("updated")
    state = str(status.get("state") or ("unknown" if facts.is_run else "runs"))
    if facts.is_run and state in ACTIVE_STATES and facts.owner is None:
        message = f"killed while {state} (no process holds the run); continue with --resume"
        state = "interrupted"
    return Progress(
        state=state,
        step=max(reached) if reached else None,
        total=_int(status.get("total_steps")),
        message=None if message is None else str(message),
        updated=None if updated is None else str(updated),
    )


def detail(p: Progress) -> str:
    """``"step 6 of 14 (43%): interrupted; continue with --resume"``: how far, and why it stopped."""
    parts = []
    if p.step is not None:
        parts.append(
            f"step {p.step}" + (f" of {p.total} ({100 * p.fraction:.0f}%)" if p.fraction is not None else "")
        )
    text = ", ".join(parts)
    if p.message:
        text += (": " if text else "") + p.message
    if p.state == "running":
        text += (" " if text else "") + f"(last status update {p.updated or 'unknown'})"
    if p.state == "evaluating":
        text += (" " if text else "") + f"(training done; last status update {p.updated or 'unknown'})"
    return text


def describe(p: Progress) -> str:
    """``"interrupted, step 6 of 14 (43%): interrupted; continue with --resume"``."""
    rest = detail(p)
    return f"{p.state}, {rest}" if rest else p.state


def describe_runs(facts: RunFacts) -> str:
    """``"3 runs: 2 finished, 1 interrupted"`` for a directory of runs."""
    runs = [f for f in facts.walk() if f.is_run and f is not facts]
    states = Counter(progress(f).state for f in runs)
    return f"{len(runs)} runs: " + ", ".join(f"{n} {state}" for state, n in sorted(states.items()))


def setup_line(facts: RunFacts) -> str | None:
    """``"simsiam on synthetic, backbone resnet_small, 2 epochs, batch 64, seed 0"``; a run trained
    with labels names its protocol instead (see :func:`selfnas.report.protocols.labeled_setup_line`);
    ``", bf16 autocast"`` ends the line of a run that computed in bf16 (its provenance says so)."""
    line = labeled_setup_line(facts)
    if line is None:
        method, data = facts.section("method").get("name"), facts.section("data").get("name")
        if method is None and data is None:
            return None
        model, optim, run = facts.section("model"), facts.section("optim"), facts.section("run")
        parts = _present(
            (model, "backbone", "backbone {}"), (optim, "epochs", "{} epochs"),
            (optim, "batch_size", "batch {}"), (run, "seed", "seed {}"),
        )  # fmt: skip
        line = ", ".join([f"{method} on {data}", *parts])
    precision = facts.provenance.get("precision") if isinstance(facts.provenance, dict) else None
    return f"{line}, bf16 autocast" if precision == "bf16" else line  # fp32, the default, goes unsaid


def _present(*fields: tuple[dict[str, Any], str, str]) -> list[str]:
    """``template`` filled with ``section[key]`` (numbers as :func:`num` writes them) for every
    ``(section, key, template)`` whose key is present."""
    return [
        template.format(num(section[key]) if isinstance(section[key], float) else section[key])
        for section, key, template in fields
        if key in section
    ]


# -- warnings --------------------------------------------------------------------------


def search_collapse(facts: RunFacts) -> list[str]:
    """Heads whose every searched layer picks a parameter-free op (DARTS collapse)."""
    if not facts.search_epochs:
        return []
    last = facts.search_epochs[-1]
    free = last.get("parameter_free") if isinstance(last.get("parameter_free"), dict) else {}
    out = []
    for head, alphas in last["alphas"].items():
        searched = len(alphas) if isinstance(alphas, list) else 0
        if searched and _int(free.get(head)) is not None and free[head] >= searched:
            out.append(
                f"{head}: all {searched} searched layers pick parameter-free ops at epoch "
                f"{last.get('epoch')} (DARTS collapse toward skip / pooling); "
                "try search.max_parameter_free or search.beta_decay"
            )
    return out


def monitor_note(facts: RunFacts) -> str:
    """Why the kNN monitor's val score differs from the Results table's: its smaller bank."""
    bank = facts.section("run").get("knn_bank", 10000)
    n_train = (facts.evaluation or {}).get("n_train")
    full = f"all {n_train:,} train images" if isinstance(n_train, int) else "all train images"
    return (
        f"the monitor's kNN bank is at most {bank:,} train images, a quick per-epoch check; "
        f"the Results table's kNN uses {full}, so the two differ"
    )


def search_decision(facts: RunFacts) -> list[str]:
    """The warning of a finished search whose alphas did not decide (see selfnas.render.verdict)."""
    if not facts.search_epochs or progress(facts).state != "finished":
        return []
    warning = record_decision_warning(facts.search_epochs[-1])
    return [] if warning is None else [warning]


def problems(facts: RunFacts) -> list[str]:
    """What is wrong with the run's files (damaged, missing, held by a live process): the report's
    first lines (see :mod:`selfnas.report.problems`)."""
    return list(facts.problems)


def warnings(facts: RunFacts) -> list[str]:
    status_warnings = facts.status.get("warnings")
    listed = [str(w) for w in status_warnings] if isinstance(status_warnings, list) else []
    return listed + search_collapse(facts) + search_decision(facts)


# -- the verdict of a comparison --------------------------------------------------------


def verdicts(facts: RunFacts) -> list[Verdict]:
    """The verdicts of a pipeline directory (its summary.json): found vs hand-crafted heads, or
    found backbone vs the hand-crafted default and vs a random architecture; [] for anything else."""
    summary = facts.summary
    if not summary or not isinstance(summary.get("found"), dict):
        return []
    found = summary["found"]
    if isinstance(summary.get("hand"), dict):
        sizes = summary.get("sizes") if isinstance(summary.get("sizes"), dict) else None
        v = compare(found, summary["hand"], sizes)
        return [] if v is None else [v]
    out = []
    for key, label in (("default", "hand-crafted"), ("random", "random")):
        other = summary.get(key)
        if isinstance(other, dict):
            v = compare(found, other, {"found": found, "hand": other}, what="backbone", other=label)
            out += [] if v is None else [v]
    return out


# -- results ---------------------------------------------------------------------------


def _classifier(facts: RunFacts) -> tuple[str, dict[str, Any]]:
    """A run's protocol as a comparison cell, and its own classifier's scores (``{}`` for SSL)."""
    labeled = trained_sections(facts.evaluation or {})
    if not labeled:
        return ("SSL" if facts.is_run else "-"), {}
    return labeled[0]


def comparison_table(children: list[RunFacts]) -> tuple[list[str], list[list[str]]]:
    """One row per sub-run: state, kNN and linear probe per split (frozen), its heads; when some run
    was trained with labels, also its protocol and its own classifier's accuracy per split."""
    evals = {id(c): c.evaluation or {} for c in children}
    splits = split_order({s for e in evals.values() for s in eval_splits(e)})
    show_heads = any(heads_of(c) for c in children)
    show_labeled = any(c.protocol != SSL for c in children)
    header = ["run", "state"] + (["protocol"] if show_labeled else [])
    header += [*(f"kNN {s}" for s in splits), *(f"linear {s}" for s in splits)]
    header += [f"classifier {s}" for s in splits] if show_labeled else []
    header += ["heads"] if show_heads else []
    rows = []
    for child in children:
        e = evals[id(child)]
        knn = e.get("knn") if isinstance(e.get("knn"), dict) else {}
        linear = e.get("linear") if isinstance(e.get("linear"), dict) else {}
        p = progress(child)
        state = describe_runs(child) if not child.is_run else p.state
        if child.is_run and p.state != "finished" and p.fraction is not None:
            state += f" ({100 * p.fraction:.0f}%)"
        protocol, own = _classifier(child)
        row = [child.name, state] + ([protocol] if show_labeled else [])
        row += [*(pct(knn.get(s)) for s in splits), *(pct(linear.get(s)) for s in splits)]
        row += [pct(own.get(s)) for s in splits] if show_labeled else []
        if show_heads:
            heads = heads_of(child)
            described = "; ".join(f"{h}: {' '.join(short_op(op) for op in ops)}" for h, ops in heads.items())
            row.append(described or ("method default" if child.is_run else "-"))
        rows.append(row)
    return header, rows


# -- heads -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """One op of a found head; ``kind`` is ``param``, ``free`` (parameter-free) or ``fixed``."""

    op: str
    dim: int | None
    kind: str


def heads_of(facts: RunFacts) -> dict[str, list[str]]:
    """Op names per head: the found genotype, else the heads the config pins (a retrained genotype)."""
    if facts.genotype is not None:
        g = facts.genotype
        heads = {"projector": g.projector, "predictor": g.predictor}
        return {n: [layer.op for layer in h.layers] for n, h in heads.items() if h is not None}
    method = facts.section("method")
    out = {}
    for name in ("projector", "predictor"):
        spec = method.get(name)
        if isinstance(spec, dict) and isinstance(spec.get("layers"), list):
            out[name] = [str(layer.get("op")) for layer in spec["layers"] if isinstance(layer, dict)]
    return out


def found_heads(facts: RunFacts) -> tuple[str, dict[str, list[Layer]]] | None:
    """A sentence saying where the found heads come from, and each head as a chain of layers."""
    last = facts.search_epochs[-1] if facts.search_epochs else None
    if facts.genotype is not None:
        g = facts.genotype
        source = "Found architecture (genotype.json)"
        heads = {
            name: [(layer.op, layer.dim) for layer in spec.layers]
            for name, spec in (("projector", g.projector), ("predictor", g.predictor))
            if spec is not None
        }
    elif last is not None and isinstance(last.get("genotype"), dict):
        source = (
            f"Architecture so far: the argmax of the alphas after epoch {last.get('epoch')} "
            "(no genotype.json: the search has not finished)"
        )
        picks = last["genotype"]
        heads = {
            name: [(str(op), None) for op in picks[name]]
            for name in ordered_heads(picks)
            if isinstance(picks[name], list)
        }
    else:
        return None
    search = facts.section("search")
    chains = {}
    for name, layers in heads.items():
        alphas = last["alphas"].get(name) if last is not None else None
        searched = len(alphas) if isinstance(alphas, list) else search.get(f"{name}_layers")
        stem = isinstance(searched, int) and len(layers) - searched == 2
        chains[name] = [
            Layer(op, dim, _kind(op, i == len(layers) - 1 or (stem and i == 0)))
            for i, (op, dim) in enumerate(layers)
        ]
    return source, chains


def _kind(op: str, fixed: bool) -> str:
    if fixed:
        return "fixed"
    return "free" if op in PARAMETER_FREE_HEAD_OPS else "param"


def chain_text(layers: list[Layer]) -> str:
    """``"linear_bn_elu(16) → avg_pool_3(16) → linear_bn_noaffine(16)"``."""
    return " → ".join(layer.op + (f"({layer.dim})" if layer.dim is not None else "") for layer in layers)
