"""Random weights written in DinoBloom's released layout (the real file is never downloaded).

DinoBloom's .pth files are DINOv2 teacher checkpoints: {"teacher": {"backbone.<name>": ...,
"dino_head.*": ..., "ibot_head.*": ...}}. Layer scale is set to 1 (DINOv2's init of 1e-5
would leave random blocks silent and every cell with the same features).
"""

from __future__ import annotations

from pathlib import Path

import torch

from slamctl.training.foundation import FoundationEncoder
from slamctl.training.vit import resize_pos_embed


def random_backbone(name: str = "dinobloom-s", seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = FoundationEncoder(name)
    with torch.no_grad():
        for block in model.backbone.blocks:
            block.ls1.gamma.fill_(1.0)
            block.ls2.gamma.fill_(1.0)
    return {k: v.clone() for k, v in model.backbone.state_dict().items()}


def write_dinobloom(path: Path, name: str = "dinobloom-s", *, grid: int | None = None, seed: int = 0) -> Path:
    """A DinoBloom-layout checkpoint of random weights; `grid` resizes the position
    embedding (37: the 518 px of stock DINOv2)."""
    state = random_backbone(name, seed)
    if grid is not None:
        state["pos_embed"] = resize_pos_embed(state["pos_embed"], grid)
    teacher = {f"backbone.{k}": v for k, v in state.items()}
    teacher["dino_head.mlp.0.weight"] = torch.zeros(8, state["cls_token"].shape[-1])
    teacher["ibot_head.last_layer.weight_g"] = torch.ones(8, 1)
    torch.save({"teacher": teacher}, path)
    return path
