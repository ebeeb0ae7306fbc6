"""A backbone with a linear classifier (and DARTS's auxiliary head), and the supervised loss.

``Classifier(backbone, K)``: N x C x H x W -> (N x K logits, N x K auxiliary logits or None). The
auxiliary head (:class:`~selfnas.models.cells.AuxiliaryHead`) needs a backbone that exposes an
intermediate map (``forward_with_auxiliary``, ``auxiliary_channels``: the cell network) and only
answers in training mode, as in DARTS. State-dict keys: ``backbone.*``, ``classifier.*``,
``auxiliary.*``, so the backbone of a saved classifier loads like that of an SSL model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfnas.errors import ConfigError
from selfnas.models.cells import AuxiliaryHead


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int, auxiliary: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = nn.Linear(int(backbone.out_dim), num_classes)
        self.auxiliary: AuxiliaryHead | None = None
        if auxiliary:
            if not hasattr(backbone, "forward_with_auxiliary"):
                raise ConfigError(
                    f"the auxiliary head needs the darts_cells backbone, not {type(backbone).__name__}; "
                    "set supervised.auxiliary=false"
                )
            self.auxiliary = AuxiliaryHead(int(backbone.auxiliary_channels), num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:  # N x C x H x W
        if self.auxiliary is not None and self.training:
            features, hidden = self.backbone.forward_with_auxiliary(x)  # N x F, N x C' x H' x W'
            return self.classifier(features), self.auxiliary(hidden)  # N x K, N x K
        return self.classifier(self.backbone(x)), None  # N x K

    def parameter_counts(self) -> dict[str, int]:
        """``parameters`` without the auxiliary head (what DARTS logs); ``auxiliary_parameters``: the head."""
        aux = sum(p.numel() for p in self.auxiliary.parameters()) if self.auxiliary is not None else 0
        return {"parameters": sum(p.numel() for p in self.parameters()) - aux, "auxiliary_parameters": aux}


def supervised_loss(
    logits: torch.Tensor,
    aux_logits: torch.Tensor | None,
    labels: torch.Tensor,
    label_smoothing: float = 0.0,
    auxiliary_weight: float = 0.4,
) -> torch.Tensor:
    """Cross-entropy with label smoothing ``eps`` (targets ``(1 - eps) * onehot + eps / K``, i.e.
    ``(1 - eps) * CE + eps * mean_k(-log p_k)``), plus ``auxiliary_weight`` times the same loss of
    the auxiliary logits when there are any (DARTS: ``loss + 0.4 * loss_aux``). Shapes N x K, N."""
    loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    if aux_logits is not None:
        loss = loss + auxiliary_weight * F.cross_entropy(
            aux_logits.float(), labels, label_smoothing=label_smoothing
        )
    return loss
