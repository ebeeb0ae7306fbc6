"""The progress a probe reports: every phase from 0 to its total, and the same numbers with or without it."""

from __future__ import annotations

import torch
from torch import nn

from selfnas.eval import probes
from selfnas.eval.knn import knn_accuracy
from selfnas.eval.probes import probe_features
from tests.eval.test_probes import QUICK, TEST, TRAIN, VAL, normalize

PHASES = ["features train", "features val", "features test", "kNN val", "kNN test", "linear probe"]


def backbone() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 8), nn.Tanh())


def test_knn_reports_every_chunk_of_queries() -> None:
    g = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(30, 4, generator=g), torch.randn(10, 4, generator=g)
    labels, query_labels = torch.arange(30) % 3, torch.arange(10) % 3
    calls: list[tuple[int, int]] = []
    with_progress = knn_accuracy(bank, labels, queries, query_labels, 3, k=5, chunk_size=4,
                                 progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    assert calls == [(0, 10), (4, 10), (8, 10), (10, 10)]
    assert with_progress == knn_accuracy(bank, labels, queries, query_labels, 3, k=5, chunk_size=4)


def test_every_phase_runs_from_zero_to_its_total_in_order(monkeypatch) -> None:
    monkeypatch.setattr(probes, "FEATURE_CHUNK", 16)  # 60 train images: 4 reports after the start
    calls: list[tuple[str, int, int]] = []
    net = backbone()
    reported = probe_features(
        net, normalize, TRAIN, {"val": VAL, "test": TEST}, "cpu", knn_k=7, seed=3,
        progress=lambda phase, done, total: calls.append((phase, done, total)), **QUICK,
    )  # fmt: skip
    phases = list(dict.fromkeys(phase for phase, _, _ in calls))
    assert phases == PHASES
    for phase in phases:
        steps = [(done, total) for p, done, total in calls if p == phase]
        total = steps[0][1]
        assert steps[0] == (0, total) and steps[-1] == (total, total), (phase, steps)
        assert [d for d, _ in steps] == sorted(d for d, _ in steps)  # never backwards
    assert [d for p, d, _ in calls if p == "features train"] == [0, 16, 32, 48, 60]
    # 5 CV folds, the refit on train (scored on val), the refit scored on test
    assert [(d, t) for p, d, t in calls if p == "linear probe"] == [(d, 7) for d in range(8)]
    silent = probe_features(
        net, normalize, TRAIN, {"val": VAL, "test": TEST}, "cpu", knn_k=7, seed=3, **QUICK
    )
    assert reported == silent  # embedding a batch at a time gives the same features
