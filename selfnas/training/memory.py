"""Will a training step fit in memory? Measured before the first step, so a run too big for the
machine stops with one line instead of being killed by the kernel's out-of-memory killer.

A DARTS cell supernet keeps every op of every edge alive for the backward pass: at the space's
defaults (8 cells of width 16 on 28-pixel images) a step of 256 images in two views needs tens of
gigabytes. :func:`step_bytes` measures what a step's forward pass saves for the backward on a
copy of the model (its BatchNorm statistics and the random streams untouched) at two tiny batch
sizes and extends the line to the real batch: the tensors autograd keeps grow with the batch, the
weights saved beside them do not. It is close to a lower bound of the step's peak (the backward
adds gradients and transients), so a step refused because its bound exceeds the memory available
would not have fitted, up to the weights (counted once in the bound; small beside a supernet's
activations) and settings the probe does not mirror (``run.compile``, channels-last).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import torch

from selfnas.errors import ConfigError

MEMINFO = Path("/proc/meminfo")
PROBE_BATCHES = (2, 4)  # the two tiny batches the line is drawn through


def available_bytes(device: torch.device) -> int | None:
    """Memory a step may still take on ``device`` (CUDA: free device memory; CPU: the kernel's
    MemAvailable), or None where it cannot be read."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            for line in MEMINFO.read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
    return None


def saved_bytes(forward: Callable[[], object]) -> int:
    """Bytes of the distinct storages autograd saves for the backward while ``forward`` runs."""
    storages: dict[tuple[str, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = (str(t.device), storage.data_ptr())
        storages[key] = max(storages.get(key, 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return sum(storages.values())


def step_bytes(model: torch.nn.Module, views: Callable[[int], tuple[torch.Tensor, ...]], batch: int) -> int:
    """Bytes a forward of ``model(*views(batch))`` saves for its backward, extrapolated from
    :data:`PROBE_BATCHES` on a deep copy of ``model`` (the model itself and the global random
    state are left as they were)."""
    probe = copy.deepcopy(model).train()
    measured = []
    with torch.random.fork_rng(devices=[]):
        for b in PROBE_BATCHES:
            measured.append(saved_bytes(lambda b=b: probe(*views(b))))
    (b0, b1), (m0, m1) = PROBE_BATCHES, measured
    per_image = max(0.0, (m1 - m0) / (b1 - b0))
    return int(m0 + per_image * (batch - b0))


def check_step_fits(
    what: str,
    needed: int,
    available: int | None,
    batch: int,
    advice: str,
) -> str | None:
    """Refuse, in one line, a step that needs more than ``available`` bytes, suggesting the largest
    power-of-two batch whose bound is under half of it; a note (to log) when the bound is over half
    of it (the backward's gradients and transients come on top: a cells supernet at batch 64 whose
    bound was 3.9 GB peaked at 6.4 GB of resident memory, the process's own 1-2 GB included);
    None otherwise."""
    if available is None or needed <= available / 2:
        return None
    per_image = needed / max(1, batch)
    fitting = 1
    while fitting * 2 <= batch and per_image * fitting * 2 <= available / 2:
        fitting *= 2
    hint = f"about {fitting} fits" if per_image * fitting <= available / 2 else "no batch size fits alone"
    sizes = (
        f"a training step of {batch} images needs at least {needed / 1e9:.1f} GB and "
        f"{available / 1e9:.1f} GB are available"
    )
    if needed > available:
        raise ConfigError(f"{what}: {sizes}; lower optim.batch_size ({hint}){advice}")
    return f"memory: {what}: {sizes}, so it may not fit (optim.batch_size {fitting} would)"
