"""What produced a run: command, seed, precision and versions, with no user, host or home path."""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

import torch


def _scrub(arg: str) -> str:
    home = str(Path.home())
    return arg.replace(home, "~") if home not in ("/", "") else arg


def _version(package: str) -> str:
    # metadata, not `import torchvision`: that import alone costs ~2 s
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def selfnas_version() -> str:
    return _version("selfnas")


def collect_provenance(
    seed: int, argv: list[str] | None = None, precision: str | None = None
) -> dict[str, Any]:
    """The command (home folder as ``~``), seed, versions and platform; ``precision``: the resolved
    ``run.precision`` the model computed in (``fp32`` / ``bf16``), when the caller ran one."""
    argv = list(sys.argv if argv is None else argv)
    if argv:
        argv[0] = Path(argv[0]).name  # the console script, not its absolute path
    precision_entry = {} if precision is None else {"precision": precision}
    return {
        "command": [_scrub(a) for a in argv],
        "seed": seed,
        **precision_entry,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": _version("torchvision"),
            "selfnas": selfnas_version(),
        },
        "platform": f"{platform.system()}-{platform.machine()}",
    }
