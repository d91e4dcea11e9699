"""DinoBloom's ViT from a local weights file: the layout, the sizes, the one-line refusals."""

import pytest
import torch
from torch.nn import functional as F

from slamctl.errors import SlamError
from slamctl.training.foundation import ARCHITECTURES, FoundationEncoder, load_foundation
from slamctl.training.vit import Attention, DinoVisionTransformer, VitConfig, resize_pos_embed
from tests.foundation_weights import random_backbone, write_dinobloom


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_dinobloom(tmp_path_factory.mktemp("dinobloom") / "DinoBloom-S.pth")


def test_loads_by_name_with_every_key_and_gives_the_class_token(weights):
    model = load_foundation("dinobloom-s", weights)
    # strict: the file's backbone is exactly the model's parameters, the heads dropped
    assert model.backbone.state_dict().keys() == random_backbone().keys()
    # DINOv2's ViT-S/14 has 22,056,576 at 518 px: 1,113 position tokens more, of 384 each
    assert sum(p.numel() for p in model.parameters()) == 22_056_576 - (1370 - 257) * 384
    x = torch.rand(3, 3, 224, 224)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (3, 384) and torch.isfinite(out).all()
    assert (out[0] - out[1]).abs().max() > 1e-3  # the cells are told apart


def test_the_four_sizes_have_dinobloom_widths_and_a_giant_with_swiglu():
    assert {n: c.embed_dim for n, c in ARCHITECTURES.items()} == {
        "dinobloom-s": 384,
        "dinobloom-b": 768,
        "dinobloom-l": 1024,
        "dinobloom-g": 1536,
    }
    g = DinoVisionTransformer(VitConfig(embed_dim=1536, depth=1, num_heads=24, ffn="swiglu"))
    assert g.blocks[0].mlp.w12.weight.shape == (2 * 4096, 1536)  # DINOv2's SwiGLUFFNFused: 4096 hidden
    assert g.pos_embed.shape == (1, 257, 1536)


def test_attention_is_scaled_dot_product_attention():
    torch.manual_seed(0)
    attn = Attention(32, 4)
    x = torch.randn(2, 10, 32)
    q, k, v = attn.qkv(x).reshape(2, 10, 3, 4, 8).permute(2, 0, 3, 1, 4)
    ref = attn.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 10, 32))
    assert torch.allclose(attn(x), ref, atol=1e-6)


def test_a_518_px_checkpoint_is_refused_unless_interpolation_is_asked(tmp_path):
    path = write_dinobloom(tmp_path / "dinov2_vits14.pth", grid=37)  # 1,370 tokens
    with pytest.raises(SlamError) as e:
        load_foundation("dinobloom-s", path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    assert "1,370 tokens (518 px" in msg and "--interpolate-pos-embed" in msg
    model = load_foundation("dinobloom-s", path, interpolate=True)
    assert model.backbone.pos_embed.shape == (1, 257, 384)
    ref = resize_pos_embed(torch.load(path, weights_only=True)["teacher"]["backbone.pos_embed"], 16)
    assert torch.equal(model.backbone.pos_embed.data, ref)


def test_a_file_of_another_size_names_the_size_it_holds(tmp_path):
    fake = {
        "cls_token": torch.zeros(1, 1, 768),
        **{f"blocks.{i}.norm1.weight": torch.ones(768) for i in range(12)},
    }
    torch.save({"teacher": {f"backbone.{k}": v for k, v in fake.items()}}, tmp_path / "b.pth")
    with pytest.raises(
        SlamError, match=r"b.pth: holds a dinobloom-b backbone .* pass --encoder dinobloom-b$"
    ):
        load_foundation("dinobloom-s", tmp_path / "b.pth")


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("truncate", "not a readable PyTorch weights file"),
        ("missing", "weights file does not exist"),
        ("no teacher", "expected a DINOv2 checkpoint"),
        ("a key less", r"not in DinoBloom's layout \(1 missing, 0 unexpected keys: missing norm.bias\)"),
        ("a wrong shape", r"not in DinoBloom's layout \(size mismatch for norm.bias"),
        ("no vit", "not a DINOv2 ViT checkpoint"),
    ],
)
def test_a_damaged_file_is_one_line_naming_it(weights, tmp_path, damage, expected):
    path = tmp_path / "w.pth"
    state = {f"backbone.{k}": v for k, v in random_backbone().items()}
    if damage == "truncate":
        data = weights.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "no teacher":
        torch.save({"teacher": [1, 2]}, path)
    elif damage == "a key less":
        del state["backbone.norm.bias"]
        torch.save({"teacher": state}, path)
    elif damage == "a wrong shape":
        state["backbone.norm.bias"] = torch.zeros(7)
        torch.save({"teacher": state}, path)
    elif damage == "no vit":
        torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(SlamError) as e:
        load_foundation("dinobloom-s", path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    assert e.match(expected)


def test_an_unknown_name_is_refused(weights):
    with pytest.raises(SlamError, match="--encoder dinobloom-x: expected one of dinobloom-s, "):
        load_foundation("dinobloom-x", weights)


def test_the_encoder_normalises_with_imagenet_statistics():
    model = FoundationEncoder("dinobloom-s").eval()
    x = torch.rand(1, 3, 224, 224)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), model.backbone((x - mean) / std), atol=1e-6)
