"""Data by name: datasets and scenarios, loaded as whole splits of uint8 tensors.

:func:`load_dataset` is the one lookup of a ``--data`` / ``data.name`` (see :mod:`selfnas.data.catalog`).
"""

from selfnas.data.catalog import data_names, describe_data, load_dataset
from selfnas.data.datasets import DATASETS, dataset_names

__all__ = ["DATASETS", "data_names", "dataset_names", "describe_data", "load_dataset"]
