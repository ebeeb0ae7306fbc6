"""The CPU thread count: chosen from the cores that other processes leave free, unless pinned."""

from __future__ import annotations

import pytest
import torch

from selfnas import device


@pytest.mark.parametrize(
    ("cores", "load", "own", "cap", "threads"),
    [
        (2, 0.1, 0.0, 2, 2),  # an idle machine: every core
        (2, 2.4, 0.0, 2, 1),  # two busy jobs on two cores: one thread, never zero
        (8, 3.0, 0.0, 8, 5),
        (8, 3.0, 1.0, 8, 6),  # our own part of the load is not someone else's
        (8, 3.4, 0.0, 8, 5),  # the load is rounded: 3.4 other processes take 3 cores
        (8, 0.0, 0.0, 4, 4),  # never more than the cap (torch's default)
        (4, 9.0, 0.0, 4, 1),
    ],
)
def test_threads_are_the_free_cores(cores, load, own, cap, threads) -> None:
    assert device.choose_threads(cores, load, own, cap=cap) == threads


@pytest.fixture
def fresh(monkeypatch):
    """A process that has not chosen its threads yet, on a fake 4-core machine under load 2.6;
    the real thread count is put back afterwards."""
    before = torch.get_num_threads()
    monkeypatch.setattr(device, "_chosen", False)
    monkeypatch.setattr(device, "cpu_cores", lambda: 4)
    monkeypatch.setattr(device.os, "getloadavg", lambda: (2.6, 1.0, 0.5))
    monkeypatch.setattr(device, "own_load", lambda: 0.0)
    torch.set_num_threads(4)
    monkeypatch.setattr(device, "TORCH_DEFAULT_THREADS", 4)
    yield
    torch.set_num_threads(before)


def test_the_choice_is_made_once_and_logged_once(fresh) -> None:
    note = device.configure_threads(None)
    assert torch.get_num_threads() == 1 and note is not None
    assert "1 of 4 cores" in note and "load 2.6" in note and "run.threads" in note
    assert device.configure_threads(None) is None and torch.get_num_threads() == 1


def test_run_threads_wins_and_needs_no_line(fresh) -> None:
    assert device.configure_threads(3) is None and torch.get_num_threads() == 3
    assert device.configure_threads(None, recorded=2) is None and torch.get_num_threads() == 3


def test_a_resumed_run_keeps_the_count_it_started_with(fresh) -> None:
    note = device.configure_threads(None, recorded=4)
    assert torch.get_num_threads() == 4 and note is not None and "as when this run started" in note


def test_threads_set_by_someone_else_are_kept(fresh) -> None:
    torch.set_num_threads(2)  # e.g. a study worker's share of the cores
    assert device.configure_threads(None, recorded=3) is None
    assert torch.get_num_threads() == 2


def test_own_load_is_a_small_non_negative_number() -> None:
    assert 0.0 <= device.own_load() <= device.cpu_cores() + 1
