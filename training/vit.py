"""The DINOv2 vision transformer (ViT-S/B/L/G, patch 14), as DinoBloom uses it.

Written out here because timm needs torchvision, which does not import beside torch 2.13 on
these machines. Module and parameter names equal those of DINOv2's `DinoVisionTransformer`
as `torch.hub.load("facebookresearch/dinov2", "dinov2_vits14")` builds it (no block chunks,
no register tokens, layer scale), so DinoBloom's released backbones load unchanged
(training/foundation.py). Only inference is needed: no drop path, no masking, and the
position embedding is fixed to one image size (the loader resizes it once, when asked).

`DinoVisionTransformer.forward` takes normalised float images (B, 3, S, S) and returns the
class token after the final norm (B, D): DINOv2's `x_norm_clstoken`, DinoBloom's features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class VitConfig:
    embed_dim: int
    depth: int
    num_heads: int
    ffn: str = "mlp"  # mlp (ViT-S/B/L) or swiglu (ViT-G: DINOv2's SwiGLUFFNFused)
    patch_size: int = 14
    img_size: int = 224  # DinoBloom's training size: 16 x 16 patches + the class token = 257
    mlp_ratio: float = 4.0

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    @property
    def tokens(self) -> int:
        return self.grid**2 + 1


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n = x.shape[:2]  # widths from the configuration: the ONNX graph keeps D static
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)  # explicit: the softmax TensorRT's FP16 runs
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, self.dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLUFFN(nn.Module):
    """DINOv2's SwiGLUFFNFused: the hidden width is 2/3 of the MLP's, rounded up to 8."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, cfg: VitConfig) -> None:
        super().__init__()
        d, hidden = cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio)
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = Attention(d, cfg.num_heads)
        self.ls1 = LayerScale(d)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = Mlp(d, hidden) if cfg.ffn == "mlp" else SwiGLUFFN(d, hidden)
        self.ls2 = LayerScale(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: VitConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, cfg.patch_size, cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, patches, D)


class DinoVisionTransformer(nn.Module):
    def __init__(self, cfg: VitConfig) -> None:
        super().__init__()
        self.config = cfg
        d = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.tokens, d))
        self.mask_token = nn.Parameter(torch.zeros(1, d))  # iBOT's; unused at inference, kept to load
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Identity()
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised (B, 3, S, S), S = the configured image size -> class token (B, D)."""
        x = self.patch_embed(images)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def resize_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, 1 + g*g, D) -> (1, 1 + grid*grid, D): the patch positions resized bicubically, as
    DINOv2's `interpolate_pos_encoding` does at run time (here once, at load)."""
    cls, patches = pos_embed[:, :1], pos_embed[:, 1:].float()
    g, d = int(round(patches.shape[1] ** 0.5)), patches.shape[2]
    patches = patches.reshape(1, g, g, d).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False, antialias=True)
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid * grid, d).to(pos_embed.dtype)
    return torch.cat((cls, patches), dim=1)
