"""`slamctl infer --shm`: pixels and embeddings through system shared memory, against the real
embedded Triton; the regions are gone after every way out."""

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from slamctl import contract, shm_token
from slamctl.client.bag_inference import infer_bag
from slamctl.client.results import BagFailure
from slamctl.client.settings import ClientSettings
from slamctl.client.shm import PREFIX
from slamctl.client.triton import TritonModels
from slamctl.serving.launcher import start_server, stop_server
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def segments() -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").glob(PREFIX + "*"))


def registered(url: str) -> list[str]:
    client = grpcclient.InferenceServerClient(url)
    status = client.get_system_shared_memory_status(headers=shm_token.read_headers(url))
    return sorted(status.regions)


def results(out: Path) -> dict:
    keep = ("decision", "cells", "top_k", "skipped")
    found = {}
    for path in sorted(out.glob("bag_*.json")):
        record = json.loads(path.read_text())
        found[path.stem] = {k: record[k] for k in keep}
    return found


@pytest.mark.parametrize("wire", ["pixels", "encoded"])
def test_shm_gives_the_grpc_results_and_leaves_nothing(server, tiny_bags, tmp_path, wire):
    (tiny_bags / "bag_0002" / "broken.png").write_bytes(b"not a png")  # skipped the same way
    try:
        for shm in ((), ("--shm",)):
            args = ("--url", server.grpc_url, "--wire", wire, "--out", tmp_path / f"out{len(shm)}")
            r = run_cli("infer", tiny_bags, "--batch-size", 4, *args, *shm)
            assert r.code == 0, r.err
    finally:
        (tiny_bags / "bag_0002" / "broken.png").unlink()
    plain, shared = results(tmp_path / "out0"), results(tmp_path / "out1")
    assert len(plain) >= 4 and plain == shared
    assert "broken.png" in json.dumps(shared["bag_0002"]["skipped"])
    assert segments() == [] and registered(server.grpc_url) == []


def test_regions_left_by_a_killed_client_are_removed(server, tiny_bags, tmp_path):
    stale = f"{PREFIX}999999999_dead_images"  # no such process
    Path("/dev/shm", stale).write_bytes(bytes(64))
    client = grpcclient.InferenceServerClient(server.grpc_url)
    headers = shm_token.read_headers(server.grpc_url)
    client.register_system_shared_memory(stale, "/" + stale, 64, headers=headers)
    assert stale in registered(server.grpc_url)
    r = run_cli("infer", tiny_bags / "bag_0000", "--url", server.grpc_url, "--out", tmp_path, "--shm")
    assert r.code == 0, r.err
    assert segments() == [] and registered(server.grpc_url) == []


def test_a_server_killed_mid_bag_leaves_no_region(tiny_repository, tiny_bags, tmp_path):
    running = start_server(tiny_repository, tmp_path)
    try:
        settings = ClientSettings(
            url=running.grpc_url, batch_size=4, concurrency=1, retries=1, backoff=0.2, timeout=5, shm=True
        )
        models = TritonModels(settings)
        assert len(segments()) == 2  # images and embeddings
        killed = threading.Event()

        def kill_after_first_batch(done, total):
            if not killed.is_set():
                killed.set()
                stop_server(running.process)

        with ThreadPoolExecutor(2) as pool, pytest.raises(BagFailure):
            infer_bag(tiny_bags / "bag_0001", models, pool, on_batch=kill_after_first_batch)
        models.close()
        assert killed.is_set() and segments() == []
    finally:
        stop_server(running.process)
    assert not shm_token.token_path(int(running.grpc_url.rsplit(":", 1)[1])).exists()


def test_close_unregisters_regions_that_requests_in_flight_still_use(server):
    # as after Ctrl-C mid-bag: Triton refuses to unregister a region in use until its requests end
    settings = ClientSettings(
        url=server.grpc_url, batch_size=64, concurrency=1, retries=0, backoff=0.2, shm=True
    )
    models = TritonModels(settings)
    images = np.zeros((models.batch_size, models.size, models.size, 3), np.uint8)
    pixels = grpcclient.InferInput(contract.IMAGES, list(images.shape), "UINT8")
    pixels.set_data_from_numpy(images)
    for i in range(4):
        rows = models.shared.embeddings_output(i * models.batch_size, models.batch_size)
        models.client.async_infer(contract.ENCODER, [pixels], lambda result, error: None, outputs=[rows])
    models.close()
    assert registered(server.grpc_url) == [] and segments() == []


def test_shm_needs_the_token_of_a_server_on_this_host(server, tiny_bags, tmp_path):
    token = shm_token.token_path(int(server.grpc_url.rsplit(":", 1)[1]))
    assert os.stat(token).st_mode & 0o077 == 0  # the server wrote it for its user alone
    saved = token.read_text()
    try:
        token.write_text("not-the-token")
        r = run_cli("infer", tiny_bags / "bag_0000", "--url", server.grpc_url, "--out", tmp_path, "--shm")
        assert r.code == 1 and "--shm: the server refused its shared-memory API" in r.err, r.err
        token.unlink()
        r = run_cli("infer", tiny_bags / "bag_0000", "--url", server.grpc_url, "--out", tmp_path, "--shm")
        assert r.code == 1 and "--shm: no shared-memory token for" in r.err, r.err
        assert "Traceback" not in r.err and not list(tmp_path.glob("bag_*.json"))
    finally:
        token.write_text(saved)
    assert segments() == []
