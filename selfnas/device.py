"""One device abstraction: CPU by default, or CUDA; the precision (fp32, or bf16 autocast on the CPU
as on CUDA), channels_last, optional compile; and the CPU thread count, chosen from the cores that
are free."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar

import torch
from torch import nn

from selfnas import distributed
from selfnas.errors import ConfigError


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cpu``; ``cuda`` / ``cuda:N`` (error if absent).

    Under torchrun with several processes, ``auto`` and ``cuda`` mean this rank's GPU,
    ``cuda:LOCAL_RANK`` (``cuda:N`` is taken as given).
    """

    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda" and distributed.launched() and torch.cuda.is_available():
        return distributed.cuda_device()
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"unknown device {spec!r}; use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for but no CUDA GPU is visible; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {spec!r} is not supported; use auto, cpu or cuda[:N]")
    return device


#: a resolved ``run.precision``: what the model's matmuls and convolutions compute in
Precision = Literal["fp32", "bf16"]

#: /proc/cpuinfo flags of a CPU that computes bf16 natively: x86 AVX512-BF16 and AMX-BF16 (Intel
#: Cooper Lake, Sapphire Rapids and later; AMD Zen 4 and later), Arm's BF16 extension. Without one, torch
#: emulates bf16 with conversions: slower than fp32, for the same rounding.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (:func:`cpuinfo_has_bf16` of /proc/cpuinfo); False
    where /proc/cpuinfo cannot be read (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return cpuinfo_has_bf16(f.read())
    except OSError:
        return False


def cpuinfo_has_bf16(cpuinfo: str) -> bool:
    """Whether the ``flags`` (x86) or ``Features`` (Arm) lines of /proc/cpuinfo text name one of
    :data:`BF16_CPU_FLAGS`."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def resolve_precision(spec: str, device: torch.device) -> Precision:
    """``run.precision`` -> what the model computes in on ``device``: ``fp32``; ``bf16``; ``auto`` =
    bf16 on CUDA or on a CPU with native bf16 (:func:`cpu_has_bf16`), else fp32. ``bf16`` asked for
    on a CPU without native bf16 is a one-line ConfigError (it would only be slower)."""
    if spec == "fp32":
        return "fp32"
    native = device.type == "cuda" or cpu_has_bf16()
    if spec == "auto":
        return "bf16" if native else "fp32"
    if spec != "bf16":
        raise ConfigError(f"unknown precision {spec!r}; use fp32, bf16 or auto")
    if not native:
        raise ConfigError(
            "run.precision=bf16 asked for, but this CPU has no native bf16 (no avx512_bf16 / amx_bf16 "
            "flag): it would be emulated and slower than fp32; use run.precision=fp32 or auto"
        )
    return "bf16"


@contextlib.contextmanager
def autocast(device: torch.device, precision: Precision) -> Iterator[None]:
    """bf16 autocast on ``device`` (CPU or CUDA) when ``precision`` is ``bf16``: matmuls and
    convolutions compute in bf16, while the weights, the optimizer state and BatchNorm's running
    statistics stay fp32 (losses: :func:`in_float32`). ``fp32``: a no-op, so fp32 runs stay
    bit-exact."""
    if precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


_F = TypeVar("_F", bound=Callable[..., Any])


def in_float32(fn: _F) -> _F:
    """Run ``fn`` (a loss) outside autocast, its bf16 / fp16 tensor arguments cast to float32: a
    loss reduces over the batch and compares near-equal numbers, where bf16's 8-bit mantissa loses
    what the gradient needs. Outside autocast, ``fn`` runs as it is (fp32 and float64 untouched)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not (torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")):
            return fn(*args, **kwargs)
        low = (torch.bfloat16, torch.float16)

        def up(x: Any) -> Any:
            return x.float() if isinstance(x, torch.Tensor) and x.dtype in low else x

        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            return fn(*map(up, args), **{k: up(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]


def prepare_module(module: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """Move to ``device``; channels_last memory format when asked (about 1.3x faster convs on
    CPU as well as on CUDA)."""
    module = module.to(device)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module


# -- CPU threads -------------------------------------------------------------------------

#: torch's own intra-op default in this process (physical cores, or OMP_NUM_THREADS), read at
#: import, before anything here sets it: the most threads an automatic choice gives
TORCH_DEFAULT_THREADS = torch.get_num_threads()
_chosen = False  # this process has chosen (or been given) its thread count: log it once


def choose_threads(cores: int, load: float, own_load: float = 0.0, cap: int | None = None) -> int:
    """Intra-op threads for the cores that are free: ``cores - round(load - own_load)``, at least
    1 and at most ``cap`` (and ``cores``).

    cores: the CPUs this process may run on; load: the 1-minute load average (runnable threads of
    every process); own_load: this process's part of it. On a busy machine, threads beyond the free
    cores only wait for each other behind the other processes: ``selfnas eval`` of a small run on
    Fashion-MNIST (54k bank) took 154 s with one thread and 725 s with two on a 2-core machine at
    load 6-8 (issue 23)."""
    others = max(0.0, load - own_load)
    limit = min(cores, cap) if cap is not None else cores
    return max(1, min(limit, cores - round(others)))


def cpu_cores() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. under taskset or a container)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def own_load() -> float:
    """This process's part of the 1-minute load average, estimated as its CPU seconds over its age,
    the age counted as at least a minute (a process younger than the average's window added only
    what it ran). 0.0 where the process age cannot be read."""
    times = os.times()
    cpu = times.user + times.system
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    return cpu / max(age, 60.0)


def configure_threads(pinned: int | None, recorded: int | None = None) -> str | None:
    """Set torch's intra-op thread count for this process; returns the line to log when the count
    was chosen here, else None.

    ``pinned`` (``run.threads``) is used as given. Otherwise a process that already chose, or whose
    threads someone else set (a study or search worker's share), keeps what it has; else
    ``recorded`` (the count a resumed run started with: float reductions depend on the thread
    count, so a resumed run replays with it) is used; else the count is chosen from the free cores:
    :func:`choose_threads` of :func:`cpu_cores`, the 1-minute load average and :func:`own_load`,
    capped at torch's default."""
    global _chosen
    current = torch.get_num_threads()
    if pinned is not None:  # the user's own choice: nothing to tell them
        _chosen = True
        torch.set_num_threads(pinned)
        return None
    if _chosen or current != TORCH_DEFAULT_THREADS:
        return None
    _chosen = True
    if recorded is not None:
        torch.set_num_threads(recorded)
        return f"torch threads: {recorded}, as when this run started (set run.threads to change)"
    cores = cpu_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform: torch's default
        return None
    own = own_load()
    threads = choose_threads(cores, load, own, cap=TORCH_DEFAULT_THREADS)
    torch.set_num_threads(threads)
    return (
        f"torch threads: {threads} of {cores} cores (1-minute load {max(0.0, load - own):.1f} from "
        "other processes; set run.threads to pin)"
    )


def die_with_parent() -> None:
    """Ask Linux to kill this worker process when its parent dies (even by ``kill -9``), so no
    orphan keeps training and holding a run's lock; elsewhere an orphan finishes its job and the
    next command waits for (or is refused by) its lock."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
