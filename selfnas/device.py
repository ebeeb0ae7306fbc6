"""One device abstraction: CPU by default; CUDA with bf16 autocast, channels_last, optional compile;
and the CPU thread count, chosen from the cores that are free."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

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


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    """bf16 autocast on CUDA when ``enabled``; a no-op on CPU (fp32 keeps CPU runs bit-exact)."""
    if enabled and device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


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
