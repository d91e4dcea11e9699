"""Batched augmentations on the training device (kornia; no torchvision), as the paper describes them.

Strong view: random crop, horizontal flip, colour jitter 0.1/0.1/0.1/0.1 with p=0.8,
rotation by 90 degrees with p=0.8. Weak view: the eval transform, a center crop.
Inputs and outputs are float (B, 3, H, W) in [0, 1].
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn

from slamctl.training.encoder import center_crop


class StrongView(nn.Module):
    def __init__(self, crop_size: int, p_jitter: float = 0.8, p_rot90: float = 0.8) -> None:
        super().__init__()
        self.crop = K.RandomCrop((crop_size, crop_size))
        self.flip = K.RandomHorizontalFlip()
        self.jitter = K.ColorJitter(0.1, 0.1, 0.1, 0.1, p=p_jitter)
        self.p_rot90 = p_rot90

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.jitter(self.flip(self.crop(x))).clamp_(0.0, 1.0)
        # exact 90-degree rotation (no resampling) of a random subset of the batch
        rotate = torch.rand(x.shape[0], device=x.device) < self.p_rot90
        return torch.where(rotate[:, None, None, None], torch.rot90(x, 1, dims=(2, 3)), x)


def weak_view(x: torch.Tensor, crop_size: int) -> torch.Tensor:
    return center_crop(x, crop_size)
