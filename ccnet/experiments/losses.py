"""Training losses: cross-entropy (decode + 0.4 x auxiliary) and the category consistent loss.

The category consistent loss (added in the TPAMI 2020 version of the CCNet paper) pulls each pixel's reduced head
feature towards its class mean (variance term), pushes class means apart (distance term) and
keeps the means small (regularisation). The authors published no code; this follows the paper.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ccnet.weights.datasets import IGNORE_INDEX


def segmentation_loss(logits: Tensor, labels: Tensor, align_corners: bool = False) -> Tensor:
    """Cross-entropy on logits upsampled to the label size (as mmseg does), ignore label 255."""
    logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=align_corners)
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)


def phi_var(distance: Tensor, delta_v: float, delta_d: float) -> Tensor:
    """0 up to delta_v, quadratic up to delta_d, then linear (continuous at both knots)."""
    quadratic = (distance - delta_v).clamp(min=0) ** 2
    linear = distance - delta_d + (delta_d - delta_v) ** 2
    return torch.where(distance > delta_d, linear, quadratic)


class CategoryConsistentLoss(nn.Module):
    """alpha*l_var + beta*l_dis + gamma*l_reg on features reduced to ``dim`` channels by a 1x1 conv."""

    def __init__(self, in_channels: int, dim: int = 16, delta_v: float = 0.5, delta_d: float = 1.5,
                 alpha: float = 1.0, beta: float = 1.0, gamma: float = 0.001) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, dim, 1)
        self.delta_v, self.delta_d = delta_v, delta_d
        self.alpha, self.beta, self.gamma = alpha, beta, gamma

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """Head features (B, C, h, w), labels (B, H, W) -> scalar loss averaged over the batch."""
        embedding = self.reduce(features)
        small = F.interpolate(labels[:, None].float(), size=embedding.shape[-2:], mode="nearest")[:, 0].long()
        terms = [self.terms(e.flatten(1).T, lab.flatten()) for e, lab in zip(embedding, small)]
        total = [self.alpha * t["var"] + self.beta * t["dis"] + self.gamma * t["reg"] for t in terms]
        return torch.stack(total).mean()

    def terms(self, points: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """The three terms for one image: ``points`` (P, D) embeddings, ``labels`` (P,)."""
        zero = points.sum() * 0.0
        classes = [c for c in labels.unique().tolist() if c != IGNORE_INDEX]
        if not classes:
            return {"var": zero, "dis": zero, "reg": zero}
        means = torch.stack([points[labels == c].mean(0) for c in classes])  # K, D
        var = torch.stack([
            phi_var((points[labels == c] - means[k]).norm(dim=1), self.delta_v, self.delta_d).mean()
            for k, c in enumerate(classes)
        ]).mean()
        if len(classes) > 1:
            gaps = torch.cdist(means, means)
            off_diagonal = ~torch.eye(len(classes), dtype=torch.bool, device=points.device)
            dis = ((2 * self.delta_d - gaps[off_diagonal]).clamp(min=0) ** 2).mean()
        else:
            dis = zero
        return {"var": var, "dis": dis, "reg": means.norm(dim=1).mean()}
