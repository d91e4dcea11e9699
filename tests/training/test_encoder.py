import torch

from slamctl.training.encoder import Encoder, EncoderConfig, ResNet18


def torchvision_resnet18_keys():
    """State-dict keys of torchvision.models.resnet18(), written out from its definition."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys = ["conv1.weight"] + [f"bn1.{k}" for k in bn]
    for layer in range(1, 5):
        for block in range(2):
            p = f"layer{layer}.{block}"
            keys += [f"{p}.conv1.weight"] + [f"{p}.bn1.{k}" for k in bn]
            keys += [f"{p}.conv2.weight"] + [f"{p}.bn2.{k}" for k in bn]
            if layer > 1 and block == 0:
                keys += [f"{p}.downsample.0.weight"] + [f"{p}.downsample.1.{k}" for k in bn]
    return keys + ["fc.weight", "fc.bias"]


def test_parameter_names_and_shapes_match_torchvision():
    model = ResNet18(num_classes=1000)
    state = model.state_dict()
    assert list(state) == torchvision_resnet18_keys()
    assert state["layer4.1.conv2.weight"].shape == (512, 512, 3, 3)
    assert state["fc.weight"].shape == (1000, 512)
    assert sum(p.numel() for p in model.parameters()) == 11_689_512  # torchvision's resnet18
    # a torchvision-shaped state dict loads strictly into the backbone (fc removed)
    backbone = ResNet18()
    backbone.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})


def test_encoder_returns_h_and_z():
    enc = Encoder(EncoderConfig(width=8, proj_dim=16)).eval()
    h, z = enc(torch.rand(3, 3, 32, 32))
    assert h.shape == (3, 64) and z.shape == (3, 16)
    assert Encoder(EncoderConfig()).config.feature_dim == 512
