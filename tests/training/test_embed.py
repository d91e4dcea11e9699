import numpy as np
import pytest

from slamctl.errors import SlamError
from slamctl.training.embed import embed_bags, load_embedded, read_meta
from slamctl.training.pretrain import pretrain
from slamctl.training.pretrain_config import PretrainConfig

TINY = PretrainConfig(
    epochs=1, batch_size=8, warmup_epochs=0, image_size=40, crop_size=32, width=4, proj_dim=8, num_workers=0
)


@pytest.fixture(scope="module")
def encoder(tiny_bags, tmp_path_factory):
    return pretrain(TINY, tiny_bags, tmp_path_factory.mktemp("run"), max_steps=1)


@pytest.mark.parametrize("features,dim", [("z", 8), ("h", 32)])
def test_embeds_every_cell_batched(encoder, tiny_bags, tmp_path, features, dim):
    meta = embed_bags(encoder, tiny_bags, tmp_path, features=features, batch_size=5, num_workers=0)
    assert meta["dim"] == dim and read_meta(tmp_path)["features"] == features
    files = sorted(tmp_path.glob("*.npz"))
    assert len(files) == 6
    with np.load(files[0], allow_pickle=False) as z:
        assert z["features"].dtype == np.float32 and z["features"].shape[1] == dim
        names = list(z["names"])
    assert names == sorted(p.name for p in (tiny_bags / files[0].stem).iterdir())


def test_batched_equals_one_at_a_time(encoder, tiny_bags, tmp_path):
    embed_bags(encoder, tiny_bags, tmp_path / "a", batch_size=64, num_workers=0)
    embed_bags(encoder, tiny_bags, tmp_path / "b", batch_size=1, num_workers=0)
    a, b = load_embedded(tmp_path / "a" / "bag_0000.npz"), load_embedded(tmp_path / "b" / "bag_0000.npz")
    assert np.allclose(a.features, b.features, atol=1e-5)


def test_resume_skips_done_bags_and_refuses_other_encoder(encoder, tiny_bags, tmp_path):
    embed_bags(encoder, tiny_bags, tmp_path, num_workers=0)
    done = tmp_path / "bag_0000.npz"
    stamp = done.stat().st_mtime_ns
    (tmp_path / "bag_0001.npz").unlink()
    embed_bags(encoder, tiny_bags, tmp_path, num_workers=0)
    assert done.stat().st_mtime_ns == stamp and (tmp_path / "bag_0001.npz").exists()
    with pytest.raises(SlamError, match="another encoder or features"):
        embed_bags(encoder, tiny_bags, tmp_path, features="z", num_workers=0)


def test_bad_embedding_files(tmp_path):
    np.savez(tmp_path / "a.npz", features=np.zeros((3, 4), np.float32), names=np.array(["x", "y", "z"]))
    with pytest.raises(SlamError, match=r"a.npz: expected embeddings of dimension 8, got 4"):
        load_embedded(tmp_path / "a.npz", 8)
    np.savez(tmp_path / "b.npz", features=np.zeros((0, 4), np.float32), names=np.array([], dtype=str))
    with pytest.raises(SlamError, match="b.npz: bag has zero cells"):
        load_embedded(tmp_path / "b.npz", 4)
    (tmp_path / "c.npz").write_bytes(b"junk")
    with pytest.raises(SlamError, match="c.npz: not a slamctl embedding file"):
        load_embedded(tmp_path / "c.npz", 4)


def test_wrong_checkpoint_kind(tiny_bags, tmp_path):
    import torch

    torch.save({"kind": "slamctl-mil"}, tmp_path / "x.pt")
    with pytest.raises(SlamError, match="expected a slamctl-encoder checkpoint, found slamctl-mil"):
        embed_bags(tmp_path / "x.pt", tiny_bags, tmp_path / "emb")


def test_hostile_embedding_files_get_one_line(tmp_path):
    """A truncated file, NaN or infinite values, and a deflated file declaring 2.4 GB of
    features are refused with one line; the last from its header, before inflating a byte."""
    import io
    import zipfile

    np.savez(tmp_path / "ok.npz", features=np.ones((3, 4), np.float32), names=np.array(["x", "y", "z"]))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:300])
    with pytest.raises(SlamError, match=r"cut.npz: not a slamctl embedding file \(BadZipFile"):
        load_embedded(tmp_path / "cut.npz", 4)
    for bad in (np.nan, np.inf):
        features = np.ones((3, 4), np.float32)
        features[1, 2] = bad
        np.savez(tmp_path / "nan.npz", features=features, names=np.array(["x", "y", "z"]))
        with pytest.raises(SlamError, match="nan.npz: 1 embedding values are NaN or infinite"):
            load_embedded(tmp_path / "nan.npz", 4)

    def member(shape, dtype):
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
        return buf.getvalue() + b"\0" * 1024  # the data would follow: a few bytes of it here

    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("features.npy", member((600_000, 1024), "<f4"))
        zf.writestr("names.npy", member((600_000,), "<U8"))
    with pytest.raises(
        SlamError, match=r"bomb.npz: features \(600000, 1024\) exceed the 1,073,741,824 bytes"
    ):
        load_embedded(tmp_path / "bomb.npz", 1024)
    with zipfile.ZipFile(tmp_path / "odd.npz", "w") as zf:
        zf.writestr("features.npy", member((5, 4), "<f4"))
        zf.writestr("names.npy", member((3,), "<U8"))
    with pytest.raises(SlamError, match=r"odd.npz: expected float features \(N, D\) for the \(3,\) names"):
        load_embedded(tmp_path / "odd.npz", 4)


def test_train_mil_on_nan_embeddings_is_one_line(tmp_path):
    from tests.training.test_mil import fake_embeddings, train_cli

    emb = fake_embeddings(tmp_path / "emb")
    with np.load(emb / "bag_03.npz") as z:
        features, names = z["features"].copy(), z["names"]
    features[0, 0] = np.nan
    np.savez(emb / "bag_03.npz", features=features, names=names)
    r = train_cli(emb, tmp_path / "run")
    assert (
        r.code == 1
        and "bag_03.npz: 1 embedding values are NaN or infinite" in r.err
        and "Traceback" not in r.err
    )
