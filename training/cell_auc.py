"""`slamctl experiment cell-auc`: how hard the synthetic abnormal cells are, one cell at a time."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from slamctl.training.embed import embed_bags
from slamctl.training.metrics import roc_auc
from slamctl.training.pretrain import pretrain
from slamctl.training.pretrain_config import PretrainConfig
from slamctl.training.synthetic import SynthConfig, generate


def cell_classifier_auc(synth: SynthConfig, pretrain_cfg: PretrainConfig, out: Path) -> float:
    """Test AUC of a cell classifier trained on *true cell labels* (cells.csv).

    Measures how hard the synthetic abnormal cells are to tell apart from normal ones, one
    cell at a time (the synthetic set aims at an AUC of about 0.85 to 0.9). The classifier is
    the sweep's encoder-ceiling reference: `cell-supervised` pretraining on the train bags
    (OUT/encoder, resumable); every cell is embedded as the sweep embeds it (OUT/embeddings),
    and the encoder's classification head scores the cells of the test bags.
    """
    import torch

    from slamctl.training.bagset import load_bags, read_cell_truth
    from slamctl.training.embed import load_embedded
    from slamctl.training.encoder import load_encoder

    data, out = Path(out) / "bags", Path(out)
    generate(synth, data)
    size = synth.image_size
    cfg = replace(pretrain_cfg, method="cell-supervised", image_size=size, crop_size=size - size // 8)
    ckpt = pretrain(cfg, data, out / "encoder", resume=True)
    embed_bags(ckpt, data, out / "embeddings", features="h", num_workers=0)
    model, _ = load_encoder(ckpt)
    truth = read_cell_truth(data)
    labels, scores = [], []
    with torch.no_grad():
        for bag in load_bags(data, "test"):
            cells = load_embedded(out / "embeddings" / f"{bag.bag_id}.npz")
            scores.append(torch.softmax(model.classify(torch.from_numpy(cells.features)), 1)[:, 1].numpy())
            labels += [truth[(bag.bag_id, name)] for name in cells.names]
    return roc_auc(np.array(labels), np.concatenate(scores))
