"""Datasets: named loaders returning whole splits as uint8 tensors."""

from selfnas.data.datasets import DATASETS, dataset_names, load_dataset

__all__ = ["DATASETS", "dataset_names", "load_dataset"]
