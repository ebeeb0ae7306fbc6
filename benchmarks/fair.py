"""What the fair benchmarks share: the machine record, selfnas timed by its own metric windows with
the start-up left out, min / median summaries, the bf16 check, and the JSON written to stdout and a
file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from typing import Any

import torch

from selfnas import device
from selfnas.device import TORCH_DEFAULT_THREADS, cpu_cores
from selfnas.io import atomic_write_json, read_jsonl
from selfnas.training.trainer import Trainer


def machine_record() -> dict[str, Any]:
    """Where the figures were measured: architecture, cores this process may use, torch's default
    thread count, torch and Python versions."""
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cores": cpu_cores(),
        "cpu_count": os.cpu_count(),
        "torch_default_threads": TORCH_DEFAULT_THREADS,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def load_average(warn: bool = False) -> list[float]:
    """1, 5 and 15-minute load averages: recorded at the start and end of a run, so that a reader
    sees whether the window was quiet; ``warn``: say on stderr when it is not."""
    loads = [round(x, 2) for x in os.getloadavg()]
    if warn and loads[0] > 0.5:
        print(
            f"warning: 1-minute load {loads[0]} on {cpu_cores()} cores before the start: the timings "
            "will be noisy (and pinned threads oversubscribed); run in a quiet window",
            file=sys.stderr,
        )
    return loads


def summary(values: list[float], digits: int = 4) -> dict[str, float | int]:
    """median, min and max of ``values`` (and how many)."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "n": len(values),
    }


def timed_fit(trainer: Trainer, warmup_windows: int = 1) -> dict[str, Any]:
    """Run ``trainer.fit()`` and time it by its own metric lines.

    Each ``step`` line of metrics.jsonl carries the pairs/s of the window since the previous line
    (``run.log_every`` steps: augmentation, forward, backward, optimizer, the log point itself).
    The first ``warmup_windows`` windows hold the start-up (first batches, lazy allocations, a
    compile) and are left out; the rest are pooled by time, so the result is timed pairs over timed
    seconds. A weight step of a search counts once (its architecture step is inside its window)."""
    bs = trainer.config.optim.batch_size
    trainer.fit()
    steps = [r for r in read_jsonl(trainer.run.metrics) if r["kind"] == "step"]
    if len(steps) <= warmup_windows:
        raise ValueError(f"{len(steps)} metric windows: none is left after {warmup_windows} of warm-up")
    ends = [r["step"] for r in steps]
    lengths = [b - a for a, b in zip([0, *ends], ends, strict=False)]
    seconds = [n * bs / r["pairs_per_s"] for n, r in zip(lengths, steps, strict=True)]
    timed_steps, timed_s = sum(lengths[warmup_windows:]), sum(seconds[warmup_windows:])
    return {
        "steps": ends[-1],
        "warmup_steps": sum(lengths[:warmup_windows]),
        "timed_steps": timed_steps,
        "timed_s": timed_s,
        "pairs_per_s": timed_steps * bs / timed_s,
        "step_s": timed_s / timed_steps,
        "windows_pairs_per_s": [round(r["pairs_per_s"], 1) for r in steps],
    }


def precision_record(precision: str, emulated: bool) -> dict[str, Any]:
    """Whether ``precision`` can be measured here, as a JSON record. On a CPU without native bf16,
    ``bf16`` ends the benchmark unless ``emulated``: then selfnas's capability check is told yes for
    this process, so the runs compute the same bf16 rounding by conversion (quality figures hold,
    timings say nothing of a bf16 CPU)."""
    native = device.cpu_has_bf16()
    if precision == "bf16" and not native:
        if not emulated:
            raise SystemExit(
                "this CPU has no native bf16 (no avx512_bf16 / amx_bf16 flag): bf16 would be emulated and "
                "its timings meaningless; add --emulated to run it anyway"
            )
        device.cpu_has_bf16 = lambda: True
    return {"precision": precision, "cpu_bf16": native, "emulated": precision == "bf16" and not native}


def emit(result: dict[str, Any], out: str | None) -> None:
    """Print ``result`` as JSON; with ``out``, also write it there atomically."""
    print(json.dumps(result, indent=2))
    sys.stdout.flush()
    if out:
        atomic_write_json(out, result)
