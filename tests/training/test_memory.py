"""The memory check before a supernet's first step: measured, extrapolated, refused in one line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from selfnas.config import build_config
from selfnas.errors import ConfigError
from selfnas.nas.strategies import darts
from selfnas.rundir import RunDir
from selfnas.training import memory

CELLS = ["search.space=cells", "search.strategy=darts", "search.nodes=2", "search.cell_width=4",
         "search.cell_layers=3", "run.knn_every=0", "run.eval_at_end=false"]  # fmt: skip


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3))


def views(b: int) -> tuple[torch.Tensor]:
    return (torch.randn(b, 1, 16, 16),)


def test_the_saved_bytes_grow_with_the_batch_and_the_model_and_random_state_are_untouched() -> None:
    net = small_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.random.get_rng_state()
    b8, b32 = memory.step_bytes(net, views, 8), memory.step_bytes(net, views, 32)
    # per image: the input and two or three 8 x 16 x 16 float activations; the weights once
    assert 2 * 8 * 16 * 16 * 4 <= (b32 - b8) / 24 <= (3 * 8 * 16 * 16 + 16 * 16) * 4
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # BN statistics kept
    assert torch.equal(rng, torch.random.get_rng_state())
    assert memory.saved_bytes(lambda: net(*views(32))) == pytest.approx(b32, rel=0.05)  # the line holds


def test_a_step_over_the_memory_is_refused_near_it_noted_and_under_half_silent() -> None:
    gb = 10**9
    with pytest.raises(
        ConfigError, match=r"256 images needs at least 50\.0 GB and 16\.0 GB .*\(about 32 fits\)"
    ):
        memory.check_step_fits("supernet", 50 * gb, 16 * gb, 256, "")
    with pytest.raises(ConfigError, match=r"no batch size fits alone\), or smaller cells"):
        memory.check_step_fits("supernet", 256 * 40 * gb, 16 * gb, 256, ", or smaller cells")
    note = memory.check_step_fits("supernet", 12 * gb, 16 * gb, 64, "")
    assert note is not None and "may not fit" in note and "batch_size 32" in note
    assert memory.check_step_fits("supernet", 7 * gb, 16 * gb, 64, "") is None
    assert memory.check_step_fits("supernet", 70 * gb, None, 64, "") is None  # unknown: no guess


def test_available_memory_is_the_kernels_memavailable(tmp_path, monkeypatch) -> None:
    fake = tmp_path / "meminfo"
    fake.write_text("MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   16000000 kB\n")
    monkeypatch.setattr(memory, "MEMINFO", fake)
    assert memory.available_bytes(torch.device("cpu")) == 16_000_000 * 1024
    monkeypatch.setattr(memory, "MEMINFO", tmp_path / "missing")
    assert memory.available_bytes(torch.device("cpu")) is None


def test_a_cell_supernet_too_big_for_the_memory_is_refused_before_any_step(
    tmp_path, tiny_overrides, monkeypatch
) -> None:
    config = build_config(overrides=[*tiny_overrides, *CELLS])
    monkeypatch.setattr(darts, "available_bytes", lambda device: 1000)
    with pytest.raises(ConfigError, match="cells supernet .* lower optim.batch_size"):
        darts.CellSearchTrainer(config, RunDir.prepare(tmp_path / "a"), quiet=True)


def test_the_check_does_not_change_what_the_search_trains(tmp_path, tiny_overrides, monkeypatch) -> None:
    config = build_config(overrides=[*tiny_overrides, *CELLS])
    monkeypatch.setattr(darts, "available_bytes", lambda device: 10**15)
    checked = darts.CellSearchTrainer(config, RunDir.prepare(tmp_path / "a"), quiet=True)
    rng_checked = torch.random.get_rng_state()
    monkeypatch.setattr(darts.CellSearchTrainer, "_check_memory", lambda self: None)
    plain = darts.CellSearchTrainer(config, RunDir.prepare(tmp_path / "b"), quiet=True)
    assert torch.equal(rng_checked, torch.random.get_rng_state())
    a, b = checked.model.state_dict(), plain.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
