"""The main job's 3-seed evidence: ``selfnas quickstart`` exactly as a new user runs it (the embedded
config, nothing overridden but ``run.seed``), seeds 0, 1 and 2; found vs the hand-crafted default at
equal width vs a random architecture of the space, with the verdict rule over the paired seeds.

Each seed is one pipeline directory, resumed where a killed run stopped. Quality figures: the load
on the machine does not change them (CPU, fixed thread count, deterministic); the wall clock of
each stage is recorded as measured and is only a timing figure when the machine was quiet.

    python benchmarks/quickstart_seeds.py --seeds 0 1 2 --runs runs/bench-quickstart \
        --out benchmarks/results_quickstart_seeds.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from selfnas.io import atomic_write_json
from selfnas.render.verdict import compare

SIDES = ("found", "default", "random")
PROBES = ("knn", "linear")
SPLITS = ("val", "test")


def quickstart_command(seed: int, out: Path, threads: int | None = None) -> list[str]:
    """The job as a new user types it, on one seed (and, on a shared machine, a thread count:
    two threads per process on oversubscribed cores spin-wait; the results differ only in the
    last digits of float sums)."""
    pinned = [] if threads is None else ["--set", f"run.threads={threads}"]
    return [sys.executable, "-m", "selfnas.cli", "quickstart", "--out", str(out), "--set", f"run.seed={seed}",
            *pinned, "-q"]  # fmt: skip


def resolved_config(out: Path) -> dict[str, Any]:
    """The pipeline's resolved config (``pipeline.yaml``) without its seed: the settings measured."""
    config = yaml.safe_load((out / "pipeline.yaml").read_text(encoding="utf-8"))
    config["run"].pop("seed", None)
    config["run"].pop("threads", None)
    return config


def collect(summaries: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per side, probe and split: the values per seed (seed order) and their mean; both verdicts."""
    seeds = sorted(summaries)
    sides: dict[str, Any] = {}
    for side in SIDES:
        sides[side] = {
            probe: {split: [summaries[s][side][probe][split] for s in seeds] for split in SPLITS}
            for probe in PROBES
        }
        sides[side]["params"] = summaries[seeds[0]][side]["params"] if len(seeds) == 1 else [
            summaries[s][side]["params"] for s in seeds
        ]  # fmt: skip
    means = {
        side: {f"{p}_{s}": statistics.fmean(sides[side][p][s]) for p in PROBES for s in SPLITS}
        for side in SIDES
    }
    verdicts = {}
    for other, label in (("default", "hand-crafted"), ("random", "random")):
        v = compare(sides["found"], sides[other], what="backbone", other=label)
        verdicts[other] = None if v is None else {"sentence": v.sentence, "better": v.better}
    gains = {
        other: {
            key: means["found"][key] - means[other][key] for key in ("knn_test", "linear_test", "linear_val")
        }
        for other in ("default", "random")
    }
    return {"seeds": seeds, "per_seed": sides, "means": means, "gain": gains, "verdict": verdicts}


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-quickstart"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_quickstart_seeds.json"))
    parser.add_argument("--threads", type=int, default=None, help="run.threads (default: the job's own)")
    args = parser.parse_args()
    summaries, costs, configs = {}, {}, []
    for seed in args.seeds:
        out = args.runs / f"s{seed}"
        command = quickstart_command(seed, out, args.threads)
        print(f"seed {seed}: {' '.join(command[1:])}", flush=True)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        summaries[seed] = summary
        costs[seed] = summary.get("costs")
        configs.append(resolved_config(out))
    if any(c != configs[0] for c in configs):
        raise SystemExit("the seeds ran different settings; remove the run folders and start again")
    result = {
        "command": "python benchmarks/quickstart_seeds.py "
        + " ".join(["--seeds", *map(str, args.seeds)]),  # fmt: skip
        "job": "selfnas quickstart --set run.seed=N (the embedded config quickstart_backbone.yaml)",
        "config": configs[0],
        "threads": args.threads or "the job's own (run.threads)",
        **collect(summaries),
        "costs_s": costs,
        "genotypes": {seed: s["genotype"] for seed, s in summaries.items()},
    }
    atomic_write_json(args.out, result)
    print(json.dumps({"gain": result["gain"], "verdict": result["verdict"]}, indent=1))


if __name__ == "__main__":
    main()
