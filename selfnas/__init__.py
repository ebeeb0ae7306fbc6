"""selfnas: neural architecture search with self-supervised learning.

Searched without labels, judged with labels. The CLI (``selfnas``) is a thin layer
over the functions re-exported here.
"""

from selfnas.errors import (
    ConfigError,
    DatasetError,
    GenotypeError,
    RegistryError,
    RunDirError,
    SelfnasError,
    TrainingError,
)

__version__ = "0.1.0"


def __getattr__(name: str):  # lazy: `import selfnas` stays cheap for the CLI's --help
    if name in ("train", "evaluate", "search", "study", "train_supervised", "finetune"):
        from selfnas import api

        return getattr(api, name)
    if name in ("build_model", "load_pretrained"):
        from selfnas import build

        return getattr(build, name)
    if name == "load_dataset":
        from selfnas.data import load_dataset

        return load_dataset
    raise AttributeError(name)


__all__ = [
    "ConfigError",
    "DatasetError",
    "GenotypeError",
    "RegistryError",
    "RunDirError",
    "SelfnasError",
    "TrainingError",
    "__version__",
    "build_model",
    "evaluate",
    "finetune",
    "load_pretrained",
    "search",
    "load_dataset",
    "train",
    "train_supervised",
]
