"""Foundation encoders from a local weights file: DinoBloom-S/B/L/G (marrlab/DinoBloom).

DinoBloom's released files (zenodo 10908163) are DINOv2 teacher checkpoints:
`{"teacher": {"backbone.<name>": tensor, "dino_head.*", "ibot_head.*"}}`; their own loader
drops the heads, strips "backbone." and loads the rest into DINOv2's ViT at 224 px (257
position tokens). This loader does the same with a strict load, and accepts a bare backbone
state dict too. Every way a file can be wrong (missing, truncated, another model size, the
stock 518 px DINOv2 weights) is one line naming the file; a 518 px position embedding is
resized only when asked (`interpolate=True`).

The encoder takes float images in [0, 1], NCHW at 224 px, normalises them with ImageNet's
mean and std (DinoBloom's transform: resize to 224, ToTensor, Normalize) and returns the
class token: the features, D = 384 / 768 / 1024 / 1536.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from slamctl.errors import SlamError
from slamctl.training.embed_config import FOUNDATION_ENCODERS
from slamctl.training.vit import DinoVisionTransformer, VitConfig, resize_pos_embed

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SIZE = 224
ARCHITECTURES = {  # name -> DINOv2's vit_small / vit_base / vit_large / vit_giant2, patch 14
    "dinobloom-s": VitConfig(embed_dim=384, depth=12, num_heads=6),
    "dinobloom-b": VitConfig(embed_dim=768, depth=12, num_heads=12),
    "dinobloom-l": VitConfig(embed_dim=1024, depth=24, num_heads=16),
    "dinobloom-g": VitConfig(embed_dim=1536, depth=40, num_heads=24, ffn="swiglu"),
}
assert tuple(ARCHITECTURES) == FOUNDATION_ENCODERS
HEADS = ("dino_head.", "ibot_head.")  # DINOv2's training heads, not part of the encoder


class FoundationEncoder(nn.Module):
    """Normalisation -> DINOv2 ViT -> class token (B, D)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name, self.config = name, ARCHITECTURES[name]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = DinoVisionTransformer(self.config)

    @property
    def dim(self) -> int:
        return self.config.embed_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """float (B, 3, 224, 224) in [0, 1] -> (B, D)."""
        return self.backbone((images - self.mean) / self.std)


def _backbone_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise SlamError(f"{path}: weights file does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: torch raises many types
        raise SlamError(f"{path}: not a readable PyTorch weights file ({type(e).__name__})") from None
    state = obj.get("teacher", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SlamError(
            f"{path}: expected a DINOv2 checkpoint (a 'teacher' table of tensors, as DinoBloom's)"
        )
    return {k.removeprefix("backbone."): v for k, v in state.items() if not k.startswith(HEADS)}


def _size_of(state: dict[str, torch.Tensor]) -> str | None:
    """The DinoBloom name whose width and depth the state dict has, if any."""
    if "cls_token" not in state:
        return None
    dim = state["cls_token"].shape[-1]
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    return next((n for n, c in ARCHITECTURES.items() if (c.embed_dim, c.depth) == (dim, depth)), None)


def load_weights(model: FoundationEncoder, path: Path, *, interpolate: bool = False) -> None:
    """DinoBloom's weights from `path` into `model`, strictly; one-line errors."""
    path, name, cfg = Path(path), model.name, model.config
    state = _backbone_state(path)
    found = _size_of(state)
    if found is None:
        raise SlamError(
            f"{path}: not a DINOv2 ViT checkpoint (no class token, or a width/depth no DinoBloom has)"
        )
    if found != name:
        want = ARCHITECTURES[found]
        raise SlamError(
            f"{path}: holds a {found} backbone (D={want.embed_dim}, {want.depth} blocks), "
            f"not {name} (D={cfg.embed_dim}, {cfg.depth} blocks): pass --encoder {found}"
        )
    tokens = state["pos_embed"].shape[1] if "pos_embed" in state else None
    if tokens is not None and tokens != cfg.tokens:
        px = int(round((tokens - 1) ** 0.5)) * cfg.patch_size
        if not interpolate:
            raise SlamError(
                f"{path}: its position embedding has {tokens:,} tokens ({px} px; stock DINOv2 is 518 px), "
                f"{name} runs at {cfg.img_size} px ({cfg.tokens} tokens): use DinoBloom's weights, "
                "or pass --interpolate-pos-embed to resize it"
            )
        state["pos_embed"] = resize_pos_embed(state["pos_embed"], cfg.grid)
    try:
        missing, unexpected = model.backbone.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of another shape: torch lists them all, keep the first
        first = next(
            (ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e).splitlines()[0]
        )
        raise SlamError(f"{path}: not in DinoBloom's layout ({first})") from None
    if missing or unexpected:
        listed = ", ".join(
            [*(f"missing {k}" for k in missing[:3]), *(f"unexpected {k}" for k in unexpected[:3])]
        )
        raise SlamError(
            f"{path}: not in DinoBloom's layout ({len(missing)} missing, {len(unexpected)} unexpected keys: {listed})"
        )


def load_foundation(name: str, path: Path, *, interpolate: bool = False) -> FoundationEncoder:
    """The named foundation encoder with the weights of `path`, in eval mode."""
    if name not in ARCHITECTURES:
        raise SlamError(f"--encoder {name}: expected one of {', '.join(ARCHITECTURES)}")
    model = FoundationEncoder(name)
    load_weights(model, path, interpolate=interpolate)
    return model.eval()


def describe(name: str) -> dict:
    """What the card and the graph's metadata say about the architecture."""
    return {"encoder": name, "architecture": "DINOv2 ViT", **asdict(ARCHITECTURES[name])}
