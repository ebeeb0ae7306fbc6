"""Embed images with a pretrained (found) backbone from a run directory.

    python examples/use_found_model.py [RUN_DIR]   # default: runs/quickstart/found

Loads the backbone with its trained weights as a plain ``nn.Module``, takes 8 test images
of the run's own dataset (Fashion-MNIST for the quickstart), normalises them as in
training and prints the shape of their features: 8 x feature width.
"""

from __future__ import annotations

import sys

import torch

from selfnas.build import load_pretrained, load_run_dataset
from selfnas.errors import SelfnasError


def main(run_dir: str) -> None:
    backbone = load_pretrained(run_dir)  # eval mode, weights from RUN_DIR/model.safetensors
    data = load_run_dataset(run_dir)
    split = data.test if data.test is not None else data.train
    images = split.images[:8]  # 8 x C x H x W uint8
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    with torch.no_grad():
        features = backbone((images.float() / 255 - mean) / std)  # 8 x D
    print(f"{data.name}: {tuple(images.shape)} images -> features {tuple(features.shape)}")


if __name__ == "__main__":
    try:
        main(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart/found")
    except SelfnasError as exc:  # e.g. no such run: train one first with `selfnas quickstart`
        sys.exit(f"error: {exc}")
