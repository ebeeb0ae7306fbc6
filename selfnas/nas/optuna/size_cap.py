"""The size caps of a study (``search.max_params`` / ``search.max_flops``) on a candidate's backbone."""

from __future__ import annotations

from typing import Any

from selfnas.config import SearchConfig
from selfnas.eval.zero_cost import flops_per_image, param_count
from selfnas.models.backbones import create_backbone


def backbone_size(update: dict[str, Any], input_shape: tuple[int, ...]) -> dict[str, int]:
    """Trainable parameters and FLOPs per image of the backbone of a model ``update`` (a fresh
    build, nothing trained); ``input_shape`` is C x H x W."""
    backbone = create_backbone(update["backbone"], in_channels=input_shape[0], **update["backbone_kwargs"])
    return {"params": param_count(backbone), "flops": flops_per_image(backbone, input_shape)}


def over_cap(search: SearchConfig, size: dict[str, int]) -> list[str]:
    """What of ``size`` is over the study's caps, as ``"params 1,234 > search.max_params 1,000"``."""
    caps = (("params", search.max_params), ("flops", search.max_flops))
    return [
        f"{k} {size[k]:,} > search.max_{k} {cap:,}" for k, cap in caps if cap is not None and size[k] > cap
    ]


def capped(search: SearchConfig) -> bool:
    return search.max_params is not None or search.max_flops is not None
