"""A found model as plain ``nn.Module``s, rebuilt from a run directory or a genotype file.

Parts: ``backbone`` (N x C x H x W -> N x F), ``heads`` (``ModuleDict`` of the projector
N x F -> N x D and, for SimSiam / BYOL, the predictor N x D -> N x D), ``encoder``
(``Sequential(backbone, projector)``: N x C x H x W -> N x D) and ``full`` (the SSL method).
A search run rebuilds with its found heads (``genotype.json``) in place of the supernet.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from selfnas.config import TrainConfig, build_config, read_config_file
from selfnas.data.types import DatasetSplits
from selfnas.errors import ConfigError, GenotypeError, RunDirError
from selfnas.models.backbones import create_backbone
from selfnas.models.genotype import HeadGenotype, load_genotype
from selfnas.models.heads import build_head
from selfnas.rundir import RunDir
from selfnas.ssl.base import SSLMethod
from selfnas.training.builder import build_method, head_specs, load_config_data, with_genotype
from selfnas.training.checkpoint import load_weights

PARTS = ("backbone", "heads", "encoder", "full")
T = TypeVar("T")


def find_run(target: str | Path) -> tuple[RunDir, Path]:
    """A run directory or a weights file inside one -> (run, weights file)."""
    target = Path(target)
    if target.is_dir():
        run = RunDir(target)
        for weights in (run.model, run.checkpoint):
            if weights.exists():
                return run, weights
        raise RunDirError(f"{target} holds no weights (model.safetensors or checkpoints/); train it first")
    if target.is_file() and target.suffix == ".safetensors":
        for parent in target.parents:
            if (parent / "config.yaml").exists():
                return RunDir(parent), target
        raise RunDirError(f"no config.yaml found above {target}; pass the run directory")
    raise RunDirError(f"{target} is neither a run directory nor a .safetensors file")


def load_run_config(run: RunDir) -> TrainConfig:
    return build_config(base=read_config_file(run.config))


def load_model(run: RunDir, weights: Path, in_channels: int) -> SSLMethod:
    """Rebuild the run's SSL model from its config and load ``weights`` into it."""
    config = load_run_config(run)
    model = build_method(config, in_channels)
    if weights.name == "model.safetensors":
        load_weights(weights, model)
    else:
        from safetensors.torch import load_file

        state = {k[len("model.") :]: v for k, v in load_file(str(weights)).items() if k.startswith("model.")}
        model.load_state_dict(state, strict=True)
    return model


def open_run(target: str | Path) -> RunDir:
    """``target`` as a run directory; anything else is a one-line :class:`RunDirError`."""
    run = RunDir(target)
    if not run.path.is_dir() or not run.config.is_file():
        raise RunDirError(f"{run.path} is not a selfnas run directory (no config.yaml); pass a run's --out")
    return run


def genotype_file(run: RunDir) -> Path | None:
    path = run.genotype
    return path if path.is_file() else None


def model_config(run: RunDir) -> TrainConfig:
    """The run's config; for a search run, with the found heads in place of the supernet."""
    config = load_run_config(run)
    if config.search is None:
        return config
    found = genotype_file(run)
    if found is None:
        raise RunDirError(
            f"search run {run.path} has no genotype.json yet (unfinished); only part='backbone' can be built"
        )
    return with_genotype(config, found)


def run_heads(run: RunDir) -> HeadGenotype | None:
    """The run's heads: found ones (genotype.json), else the configured ones; None for a search
    that has not written its genotype yet."""
    found = genotype_file(run)
    if found is not None:
        genotype = load_genotype(found)
        return genotype if isinstance(genotype, HeadGenotype) else None
    config = load_run_config(run)
    if config.search is not None:
        return None
    projector, predictor = head_specs(config)
    return HeadGenotype(projector, predictor, config.method.name)


def create_run_backbone(config: TrainConfig, in_channels: int) -> nn.Module:
    if config.search is not None and config.search.space != "heads":
        raise RunDirError(
            f"a {config.search.space} search run holds a supernet or a study, not a usable backbone; "
            "retrain its genotype with `selfnas train --genotype RUN/genotype.json` and use that run"
        )
    return create_backbone(config.model.backbone, in_channels=in_channels, **config.model.backbone_kwargs)


def _backbone_prefix(weights: Path) -> str:
    """Key prefix of the backbone in ``model.safetensors`` or in a resumable checkpoint."""
    return "backbone." if weights.name == "model.safetensors" else "model.backbone."


def _read(weights: Path, what: str, read: Callable[[Any], T]) -> T:
    try:
        with safe_open(str(weights), framework="pt") as fh:
            return read(fh)
    except (SafetensorError, OSError) as exc:
        raise RunDirError(f"cannot read {what} from {weights}: {exc}; is the file corrupt?") from None


def weights_in_channels(config: TrainConfig, weights: Path) -> int:
    """Image channels the weights were trained on: the input width of the backbone's first conv."""
    with torch.device("meta"):  # module order only: no memory, no init cost
        probe = create_run_backbone(config, 3)
    first = next(name for name, t in probe.state_dict().items() if t.ndim == 4)
    key = _backbone_prefix(weights) + first

    def shape(fh) -> list[int] | None:
        return fh.get_slice(key).get_shape() if key in fh.keys() else None

    found = _read(weights, "the first conv", shape)
    if found is None:
        raise RunDirError(f"{weights} holds no {key}; was it made with another config?")
    return int(found[1])


def backbone_state(weights: Path) -> dict[str, torch.Tensor]:
    """The backbone's own state dict (keys without any ``backbone.`` / ``model.`` prefix)."""
    prefix = _backbone_prefix(weights)

    def read(fh) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: fh.get_tensor(k) for k in fh.keys() if k.startswith(prefix)}

    return _read(weights, "the backbone", read)


def load_run_dataset(run_dir: str | Path, train_limit: int | None = None) -> DatasetSplits:
    """The run's dataset, split as for training (same root, validation fraction and seed)."""
    return load_config_data(load_run_config(open_run(run_dir)), train_limit=train_limit)


def select_part(model: SSLMethod, part: str) -> nn.Module:
    if part == "backbone":
        return model.backbone
    if part == "encoder":
        return nn.Sequential(model.backbone, model.projector)
    if part == "heads":
        heads = {"projector": model.projector}
        if model.predictor is not None:
            heads["predictor"] = model.predictor
        return nn.ModuleDict(heads)
    return model


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise ConfigError(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")


def _heads_from_genotype(genotype: HeadGenotype, part: str, feature_dim: int | None) -> nn.ModuleDict:
    if part != "heads":
        raise GenotypeError(
            f"a heads genotype holds no backbone, so part={part!r} needs the run directory that found it"
        )
    if feature_dim is None:
        raise GenotypeError("heads from a genotype need feature_dim (the backbone's output width)")
    heads = {"projector": build_head(genotype.projector, feature_dim)}
    if genotype.predictor is not None:
        heads["predictor"] = build_head(genotype.predictor, genotype.projector.out_dim)
    return nn.ModuleDict(heads)


def build_model(
    genotype_or_run_dir: str | Path,
    part: str = "backbone",
    in_channels: int | None = None,
    feature_dim: int | None = None,
) -> nn.Module:
    """A freshly initialised ``part`` of a run's model, or the heads of a genotype file.

    ``in_channels`` defaults to the channels the run's weights were trained on;
    ``feature_dim`` (the projector's input width) is needed only for a genotype file.
    """
    _check_part(part)
    path = Path(genotype_or_run_dir)
    if path.is_file() and path.suffix == ".json":
        genotype = load_genotype(path)
        if not isinstance(genotype, HeadGenotype):
            if part != "backbone":
                raise GenotypeError(
                    f"a {genotype.space} genotype builds a backbone only; use part='backbone'"
                )
            name = getattr(genotype, "backbone", "darts_cells")  # variants name their backbone
            return create_backbone(name, in_channels=in_channels or 3, genotype=genotype.to_json())
        return _heads_from_genotype(genotype, part, feature_dim)
    run = open_run(path)
    config = load_run_config(run) if part == "backbone" else model_config(run)
    if in_channels is None:
        in_channels = weights_in_channels(config, find_run(path)[1])
    if part == "backbone":
        return create_run_backbone(config, in_channels)
    return select_part(build_method(config, in_channels), part)


def load_backbone(run: RunDir, weights: Path) -> nn.Module:
    """The run's backbone with its trained weights from ``weights`` (``model.safetensors`` or a
    resumable checkpoint), in eval mode, built for the image channels it was trained on.

    Every kind of run keeps its backbone under ``backbone.``: an SSL model, a head search's, and the
    classifier of a supervised or fine-tuning run alike, so one loader serves them all. A search run
    that holds no usable backbone (cells, backbone variants) is a one-line :class:`RunDirError`."""
    config = load_run_config(run)
    backbone = create_run_backbone(config, weights_in_channels(config, weights))
    try:
        missing, unexpected = backbone.load_state_dict(backbone_state(weights), strict=False)
    except RuntimeError:  # a tensor of another shape: another width or depth
        missing, unexpected = ["(a tensor of another shape)"], []
    if missing or unexpected:
        raise RunDirError(
            f"the backbone in {weights} does not fit {config.model.backbone} ({len(missing)} missing or "
            f"misshapen, {len(unexpected)} unexpected keys); was it made with another config?"
        )
    return backbone.eval()


def load_pretrained(run_dir: str | Path, part: str = "backbone") -> nn.Module:
    """``part`` of a run's model with its trained weights (``model.safetensors``), in eval mode."""
    _check_part(part)
    run, weights = find_run(open_run(run_dir).path)
    if part == "backbone":
        return load_backbone(run, weights)
    config = load_run_config(run)
    if config.supervised is not None or config.finetune is not None:
        raise RunDirError(
            f"{run.path} was trained with labels: it holds a backbone and a classifier, no SSL heads; "
            "load part='backbone'"
        )
    in_channels = weights_in_channels(config, weights)
    if config.search is not None:
        raise RunDirError(
            f"{run.path} is a search run: its heads are an untrained supernet and only part='backbone' "
            f"is pretrained; retrain the found heads: selfnas train --genotype {run.path / 'genotype.json'}"
        )
    return select_part(load_model(run, weights, in_channels), part).eval()
