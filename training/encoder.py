"""The cell encoder: ResNet18 (torchvision parameter names) + SimCLR projection head.

ResNet18 is written out here because torchvision does not import beside torch 2.13 on
these machines. Parameter names equal torchvision's, so a torchvision
`resnet18().state_dict()` loads into `ResNet18(num_classes=1000)`.

The input normalisation is part of the module: `Encoder.forward` takes float images in
[0, 1], NCHW, and normalises them itself, so training, embedding and the exported ONNX
graph cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slamctl.training.checkpoint import ENCODER_KIND, load_checkpoint

MEAN = (0.6009, 0.5513, 0.7394)
STD = (0.1982, 0.2448, 0.1076)


@dataclass(frozen=True)
class EncoderConfig:
    width: int = 64  # channels of the first stage; 64 is ResNet18, smaller widths for CPU tests
    proj_dim: int = 512  # projection head output (the paper: 512)
    num_classes: int = 0  # >0 adds a cell classifier on h (the `supervised` baseline)

    @property
    def feature_dim(self) -> int:
        return 8 * self.width  # h: output of the last stage after global pooling


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet18; `fc` is the identity when num_classes is 0 (features of size 8*width)."""

    def __init__(self, width: int = 64, num_classes: int = 0) -> None:
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(w, w, 1), BasicBlock(w, w, 1))
        self.layer2 = nn.Sequential(BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 2 * w, 1))
        self.layer3 = nn.Sequential(BasicBlock(2 * w, 4 * w, 2), BasicBlock(4 * w, 4 * w, 1))
        self.layer4 = nn.Sequential(BasicBlock(4 * w, 8 * w, 2), BasicBlock(8 * w, 8 * w, 1))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * w, num_classes) if num_classes else nn.Identity()
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class Encoder(nn.Module):
    """Normalisation -> ResNet18 backbone (h) -> projection head (z), optional classifier."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        d = config.feature_dim
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = ResNet18(config.width, num_classes=0)
        self.projection = nn.Sequential(
            nn.Linear(d, config.proj_dim),
            nn.ReLU(inplace=True),
            nn.Linear(config.proj_dim, config.proj_dim),
        )
        self.classifier = nn.Linear(d, config.num_classes) if config.num_classes else None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images: float (B, 3, S, S) in [0, 1] -> h (B, 8*width), z (B, proj_dim)."""
        # contiguous NCHW: with channels-last input (a permuted NHWC batch) the CPU backward
        # of torch 2.13 corrupted memory here when run on one thread
        h = self.backbone(((images - self.mean) / self.std).contiguous())
        return h, self.projection(h)

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        """Cell logits (B, num_classes) from features h; only for the supervised baseline."""
        assert self.classifier is not None, "encoder was built without a classifier"
        return self.classifier(h)


def uint8_to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, S, S, 3) RGB -> float (B, 3, S, S) in [0, 1], the encoder's input."""
    return images.permute(0, 3, 1, 2).contiguous().float().div_(255.0)


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Center crop of (B, C, H, W) to (B, C, size, size); the eval transform."""
    h, w = images.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top : top + size, left : left + size]


def load_encoder(path: Path, device: torch.device | str = "cpu") -> tuple[Encoder, dict]:
    """The encoder of a pretraining checkpoint, in eval mode, and the checkpoint's config."""
    ckpt = load_checkpoint(path, ENCODER_KIND, map_location=device)
    return encoder_of(ckpt, device), ckpt["config"]


def encoder_of(ckpt: dict, device: torch.device | str = "cpu") -> Encoder:
    """The encoder of a loaded pretraining checkpoint, in eval mode."""
    model = Encoder(EncoderConfig(**ckpt["encoder_config"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()
