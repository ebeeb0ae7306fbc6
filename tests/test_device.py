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


# -- precision ------------------------------------------------------------------------------

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device value needs no GPU


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [
        ("flags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n", True),  # Zen 4, Cooper Lake
        ("flags\t\t: fpu avx2 amx_bf16 amx_tile\n", True),
        ("Features\t: fp asimd bf16 i8mm\n", True),  # Arm (Graviton 3, Neoverse V1)
        ("flags\t\t: fpu avx2 avx512f avx512bw\n", False),  # AVX-512 without BF16: emulated
        ("model name\t: bf16 in a name is no flag\nflags\t\t: fpu avx2\n", False),
        ("", False),
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo, native) -> None:
    assert device.cpuinfo_has_bf16(cpuinfo) is native


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_where_the_cpu_has_it_and_on_cuda(monkeypatch, native) -> None:
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: native)
    assert device.resolve_precision("auto", CPU) == ("bf16" if native else "fp32")
    assert device.resolve_precision("auto", CUDA) == "bf16"
    assert device.resolve_precision("fp32", CPU) == device.resolve_precision("fp32", CUDA) == "fp32"


def test_bf16_asked_for_on_a_cpu_without_it_is_one_line_saying_what_to_do(monkeypatch) -> None:
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: False)
    with pytest.raises(device.ConfigError) as err:
        device.resolve_precision("bf16", CPU)
    message = str(err.value)
    assert "\n" not in message and "no native bf16" in message and "run.precision=fp32 or auto" in message
    assert device.resolve_precision("bf16", CUDA) == "bf16"  # CUDA has it: never refused
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)
    assert device.resolve_precision("bf16", CPU) == "bf16"


def test_autocast_computes_matmuls_in_bf16_on_the_cpu_and_fp32_is_untouched() -> None:
    x = torch.randn(4, 4)
    with device.autocast(CPU, "bf16"):
        assert (x @ x).dtype == torch.bfloat16
    with device.autocast(CPU, "fp32"):
        assert torch.equal(x @ x, x @ x) and (x @ x).dtype == torch.float32
        assert not torch.is_autocast_enabled("cpu")


def test_in_float32_runs_a_loss_outside_autocast_on_float32_inputs() -> None:
    @device.in_float32
    def loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a @ b.t()).sum()

    x = torch.randn(8, 4)
    with device.autocast(CPU, "bf16"):
        assert loss(x.bfloat16(), b=x).dtype == torch.float32
    assert loss(x.double(), x.double()).dtype == torch.float64  # outside autocast: as given
