"""Evaluate a run's trained backbone: kNN and linear probe of its frozen features.

Any run with a backbone: SSL pretraining, a head search, and the runs trained with labels
(``selfnas train --supervised``, ``selfnas finetune``), so a supervised backbone's frozen features
compare with an SSL one's. Those runs' eval.json already holds their own classifier's accuracy
(its ``supervised`` / ``finetune`` section): it is kept beside the frozen scores.

The probe's weight decay is chosen by cross-validation on the train split only;
accuracy is reported on the held-out validation and test splits. Nothing is selected
on the test split.

The budget: ``train_limit`` / ``test_limit`` when given, else the run's ``run.eval_train_limit`` /
``run.eval_test_limit``, else (with ``follow_run``, what ``selfnas eval`` does) the run's own
``data.train_limit`` when it trained on a subset (for the bank and for each held-out split), else
every image. eval.json's ``limits`` holds the limits used and ``limits_from`` where each came from.
While it runs, a line of time left is logged every 30 s (:class:`selfnas.eval.eta.EvalEta`).

While :func:`evaluate` works on a run whose training finished, status.json reads ``"evaluating"``;
once eval.json is written, ``"finished"`` again. A run left ``"evaluating"`` was killed during its
evaluation: ``selfnas eval RUN`` (or ``selfnas train --resume``) finishes it.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from selfnas.build import find_run, load_backbone, load_run_config, weights_in_channels
from selfnas.config import TrainConfig
from selfnas.data import load_dataset
from selfnas.data.augment import TwoViewAugment, augment_preset
from selfnas.data.splits import limit_images
from selfnas.data.types import DatasetSplits, ImageSet
from selfnas.device import Precision, configure_threads, resolve_device, resolve_precision
from selfnas.errors import DatasetError
from selfnas.eval.eta import EvalEta
from selfnas.eval.probes import ProbeProgress, probe_features
from selfnas.io import atomic_write_bytes, atomic_write_json
from selfnas.methods import SIMSIAM
from selfnas.rundir import RunDir
from selfnas.tracking import append_metrics
from selfnas.training.progress import TrainProgress

#: eval.json sections that a run trained with labels wrote: its own classifier's accuracy
TRAINED_SECTIONS = ("supervised", "finetune")


def evaluate_features(
    backbone: torch.nn.Module,
    data: DatasetSplits,
    device: torch.device,
    knn_k: int = 200,
    seed: int = 0,
    linear: bool = True,
    progress: ProbeProgress | None = None,
    precision: Precision = "fp32",
) -> dict[str, Any]:
    """kNN and linear-probe accuracies of ``backbone`` on ``data``'s held-out splits; ``progress``
    hears how far the features, kNN and probe got (see :class:`selfnas.eval.probes.ProbeProgress`);
    the features are computed in ``precision`` (recorded in the result).

    ``knn_k`` in the result is the k the kNN vote used: ``knn_k`` clipped to the bank (the train
    images), recorded because a k clipped to a small bank depresses the kNN accuracy (see
    :func:`selfnas.eval.knn.effective_k`)."""
    train, held_out = data.train, _held_out(data)
    normalize = TwoViewAugment(
        *augment_preset(SIMSIAM, train.size, train.channels), data.mean, data.std
    ).normalize
    t0 = time.perf_counter()
    probe = probe_features(
        backbone, normalize, train, held_out, device, knn_k=knn_k, linear=linear, seed=seed,
        progress=progress, precision=precision,
    )  # fmt: skip
    result: dict[str, Any] = {"data": data.name, "n_train": probe.n_train, "feature_dim": probe.feature_dim}
    result["knn"] = probe.knn
    result["knn_k"] = probe.knn_k
    result["precision"] = precision
    if probe.linear is not None:
        result["linear"] = {
            **probe.linear,
            "weight_decay": probe.weight_decay,
            "cv": {str(wd): s for wd, s in (probe.cv_scores or {}).items()},
        }
    result["seconds"] = time.perf_counter() - t0
    return result


def _held_out(data: DatasetSplits) -> dict[str, ImageSet]:
    """The splits to measure on, ``{"val": ..., "test": ...}``; DatasetError when there is nothing
    to evaluate: no labels on train, or no held-out split."""
    if not data.train.labeled:
        raise DatasetError(
            f"{data.name} has no labels, so kNN / linear evaluation is impossible; "
            "name a labeled dataset with --data"
        )
    held_out = {n: s for n, s in (("val", data.val), ("test", data.test)) if s is not None}
    if not held_out:
        raise DatasetError(f"{data.name} has no validation or test split to evaluate on")
    return held_out


def _limited(
    splits: DatasetSplits, train_limit: int | None, test_limit: int | None, seed: int
) -> DatasetSplits:
    def held_out(s: ImageSet | None) -> ImageSet | None:
        return None if s is None else limit_images(s, test_limit, seed, what="test_limit")

    return DatasetSplits(
        splits.name,
        limit_images(splits.train, train_limit, seed),
        held_out(splits.val),
        held_out(splits.test),
        splits.mean,
        splits.std,
    )


def evaluate(
    target: str | Path,
    data: str | None = None,
    data_root: str | None = None,
    device: str = "auto",
    linear: bool = True,
    write: bool = True,
    train_limit: int | None = None,
    test_limit: int | None = None,
    quiet: bool | None = None,
    follow_run: bool = False,
) -> dict[str, Any]:
    """Evaluate a run directory's backbone (or that of a checkpoint in one); writes ``eval.json`` into
    the run and returns what it holds: the frozen scores, plus the ``supervised`` / ``finetune``
    section that a run trained with labels wrote before (kept, see :func:`_trained_sections`).

    ``train_limit`` / ``test_limit`` keep seeded subsets of the kNN bank / probe training
    images and of each held-out split (quick looks); when None, the run's
    ``run.eval_train_limit`` / ``run.eval_test_limit`` apply, then, with ``follow_run``, the run's
    ``data.train_limit`` (see :func:`eval_limits`), else all images. The limits used and where
    they came from are recorded in the result (``limits``, ``limits_from``). ``quiet``: plain
    status lines instead of progress bars; None: quiet when stderr is not a terminal. Threads:
    ``run.threads``, else chosen from the free cores (see :func:`selfnas.device.configure_threads`).

    With ``write``, a run whose training finished reads ``"evaluating"`` in status.json until
    eval.json is written, then ``"finished"``; an error puts status.json back as it was, while a
    kill or Ctrl-C leaves ``"evaluating"`` (the evaluation is still owed). A run still training is
    left as it is.
    """
    run, weights = find_run(target)
    config = load_run_config(run)
    with _evaluating(run, write):
        threads_note = configure_threads(config.run.threads)
        spec = data or config.data.name
        splits = load_dataset(
            spec,
            root=data_root if data_root is not None else config.data.root,
            download=config.data.download,
            val_fraction=config.data.val_fraction,
            seed=config.run.seed,
        )
        limits, limits_from = eval_limits(config, train_limit, test_limit, follow_run)
        train_limit, test_limit = limits["train"], limits["test"]
        splits = _limited(splits, train_limit, test_limit, config.run.seed)
        _held_out(splits)  # a user mistake stays a one-line error: before anything is printed
        _check_channels(weights_in_channels(config, weights), splits)
        dev = resolve_device(device)
        precision = run_precision(run, config, dev)
        backbone = load_backbone(run, weights).to(dev)
        progress = TrainProgress(
            None, 0, f"evaluate {run.path.name}", not sys.stderr.isatty() if quiet is None else quiet
        )
        try:
            if threads_note:
                progress.log(threads_note)
            progress.log(f"evaluating {run.path} on {_what(splits, linear)}; {_budget_note(limits_from)}")
            eta = EvalEta(progress, progress.log, _images(splits))
            result = evaluate_features(
                backbone, splits, dev, seed=config.run.seed, linear=linear, progress=eta, precision=precision
            )
        finally:
            progress.close()
        result["weights"] = weights.name
        result["n_held_out"] = {
            n: len(s) for n, s in (("val", splits.val), ("test", splits.test)) if s is not None
        }
        result["limits"] = limits
        result["limits_from"] = limits_from
        if write:
            result = {**_trained_sections(run), **result}
            atomic_write_json(run.eval, result)
            append_metrics(
                run,
                {
                    "kind": "eval",
                    **{k: v for k, v in result.items() if k != "linear" and k not in TRAINED_SECTIONS},
                    "linear": result.get("linear", {}),
                },
            )
    return result


#: where a limit came from, as eval.json's ``limits_from`` names it
LIMIT_SOURCES = ("argument", "run.eval_train_limit", "run.eval_test_limit", "data.train_limit", "all")


def eval_limits(
    config: TrainConfig, train_limit: int | None, test_limit: int | None, follow_run: bool
) -> tuple[dict[str, int | None], dict[str, str]]:
    """The evaluation's limits ``{"train": N or None, "test": N or None}`` and where each came from
    (one of :data:`LIMIT_SOURCES`): the argument, else the run's ``run.eval_*_limit``, else with
    ``follow_run`` the run's ``data.train_limit`` (a run trained on a subset is evaluated on a
    subset of the same size: bank, and each held-out split), else all images (None)."""
    limits: dict[str, int | None] = {}
    sources: dict[str, str] = {}
    for name, given, configured in (
        ("train", train_limit, config.run.eval_train_limit),
        ("test", test_limit, config.run.eval_test_limit),
    ):
        if given is not None:
            limits[name], sources[name] = given, "argument"
        elif configured is not None:
            limits[name], sources[name] = configured, f"run.eval_{name}_limit"
        elif follow_run and config.data.train_limit is not None:
            limits[name], sources[name] = config.data.train_limit, "data.train_limit"
        else:
            limits[name], sources[name] = None, "all"
    return limits, sources


def _budget_note(sources: dict[str, str]) -> str:
    """How the limits were chosen, in words, with the way to change them."""
    if "data.train_limit" in sources.values():
        return "capped at the run's data.train_limit like its training (--all-images for every image)"
    if set(sources.values()) == {"all"}:
        return "every image (--train-limit / --test-limit for a seeded subset)"
    return "limits: " + ", ".join(f"{n} from {s}" for n, s in sources.items())


def _images(splits: DatasetSplits) -> int:
    """Images the evaluation embeds: the bank and every held-out split."""
    return sum(len(s) for s in (splits.train, splits.val, splits.test) if s is not None)


def _check_channels(trained: int, splits: DatasetSplits) -> None:
    """DatasetError (one line) when the images have other channels than the backbone was trained on."""
    if splits.train.channels != trained:
        raise DatasetError(
            f"the backbone was trained on {trained}-channel images and {splits.name} has "
            f"{splits.train.channels}; evaluate on a dataset like the one it was trained on (--data)"
        )


def run_precision(run: RunDir, config: TrainConfig, device: torch.device) -> Precision:
    """The precision a run's features are measured in: the one it trained in (``precision`` of its
    provenance.json), so that a bf16 run is measured as it trained on any machine; for a run that
    recorded none (older runs), its ``run.precision`` resolved on ``device``."""
    try:
        recorded = json.loads(run.provenance.read_text(encoding="utf-8")).get("precision")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded in ("fp32", "bf16"):
        return recorded
    return resolve_precision(config.run.precision, device)


def _trained_sections(run: RunDir) -> dict[str, Any]:
    """The ``supervised`` / ``finetune`` sections of the run's eval.json (the accuracy of the
    classifier it trained with labels), to keep beside the frozen scores that replace the rest. Each
    keeps the data and split sizes it was measured on, which the frozen evaluation's top-level
    ``data`` / ``n_train`` / ``n_held_out`` no longer describe. ``{}`` without such a section (or
    without a readable eval.json)."""
    try:
        before = json.loads(run.eval.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # none yet, or unreadable: the frozen scores replace it
    if not isinstance(before, dict):
        return {}
    context = {k: before[k] for k in ("data", "n_train", "n_held_out") if k in before}
    return {
        name: {**context, **before[name]} for name in TRAINED_SECTIONS if isinstance(before.get(name), dict)
    }


@contextlib.contextmanager
def _evaluating(run: RunDir, write: bool) -> Iterator[None]:
    """status.json reads ``"evaluating"`` inside and ``"finished"`` after, for a run whose training
    finished and an evaluation that writes eval.json. An error puts back status.json as it was, byte
    for byte (a refused evaluation changes nothing); a kill or Ctrl-C leaves ``"evaluating"``: the
    evaluation is still owed."""
    if not write or run.read_status().get("state") not in ("finished", "evaluating"):
        yield
        return
    before = run.status.read_bytes()
    run.write_status("evaluating")
    try:
        yield
    except Exception:
        atomic_write_bytes(run.status, before)
        raise
    run.write_status("finished")


def _what(splits: DatasetSplits, linear: bool) -> str:
    """``"fashion-mnist: bank 54000 images, val 6000, test 10000; kNN, linear probe"``."""
    held_out = [f"{n} {len(s)}" for n, s in (("val", splits.val), ("test", splits.test)) if s is not None]
    probes = "kNN, linear probe" if linear else "kNN"
    return f"{splits.name}: bank {len(splits.train)} images, {', '.join(held_out)}; {probes}"
