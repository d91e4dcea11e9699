"""`slamctl infer` and `slamctl health` end to end against the real embedded Triton."""

import csv
import json
import os
import re
import shutil
import subprocess
import threading
import time

import numpy as np
import onnxruntime as ort
import pytest
import torch
import tritonclient.grpc as grpcclient

from slamctl import contract, shm_token
from slamctl.client.bag_inference import infer_bag
from slamctl.client.results import BagFailure, read_written
from slamctl.client.settings import ClientSettings
from slamctl.client.triton import TritonModels
from slamctl.images import prepare_cell
from slamctl.serving.launcher import start_server, stop_server
from slamctl.training.embed import load_embedded
from slamctl.training.mil import load_mil
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def in_process(repo, bag):
    """The same pipeline without a server: ONNX Runtime sessions on the repository's files."""
    files = sorted(bag.iterdir())
    images = np.stack([prepare_cell(f, 40, 32) for f in files])  # the tiny models' image and crop sizes
    enc = ort.InferenceSession(str(repo / contract.ENCODER / "1" / "model.onnx"))
    agg = ort.InferenceSession(str(repo / contract.AGGREGATOR / "1" / "model.onnx"))
    emb = enc.run(None, {contract.IMAGES: images})[0]
    probs, attention = agg.run(None, {contract.EMBEDDINGS: emb})
    return [f.name for f in files], emb, probs, attention


def test_one_bag_matches_the_in_process_pipeline(server, tiny_repository, tiny_models, tmp_path):
    bag = tiny_models.bags / "bag_0001"
    r = run_cli("infer", bag, "--url", server.grpc_url, "--out", tmp_path, "--top-k", 5, "--batch-size", 4)
    assert r.code == 0, r.err
    result = json.loads((tmp_path / "bag_0001.json").read_text())
    names, emb, probs, attention = in_process(tiny_repository, bag)
    assert result["cells"] == len(names) and result["skipped"] == []
    assert result["decision"]["probability_abnormal"] == pytest.approx(float(probs[1]), abs=1e-5)
    top = [names[i] for i in np.argsort(-attention, kind="stable")[:5]]
    assert [c["file"] for c in result["top_k"]] == top
    # and the training side agrees: the PyTorch MIL model on the training embeddings
    model, _ = load_mil(tiny_models.aggregator)
    trained = load_embedded(tiny_models.embeddings / "bag_0001.npz")
    assert trained.names == names and np.allclose(trained.features, emb, atol=1e-4)
    with torch.no_grad():
        ref = torch.softmax(model(torch.from_numpy(trained.features)).logits, 0)[1].item()
    assert result["decision"]["probability_abnormal"] == pytest.approx(ref, abs=1e-4)


def test_folder_of_bags_csv_and_resume(server, tiny_bags, tmp_path):
    args = ["infer", tiny_bags, "--url", server.grpc_url, "--out", tmp_path, "--format", "csv", "--top-k", 3]
    r = run_cli(*args)
    assert r.code == 0, r.err
    files = sorted(tmp_path.glob("*.csv"))
    assert len(files) == 6
    rows = list(csv.DictReader(open(files[0])))
    assert len(rows) == 3 and [int(x["rank"]) for x in rows] == [1, 2, 3]
    assert rows[0]["label"] in ("normal", "abnormal") and 0 <= float(rows[0]["probability_abnormal"]) <= 1
    stamp = files[0].stat().st_mtime_ns
    files[1].unlink()
    r = run_cli(*args, "--resume", "--report")
    assert r.code == 0 and "1 done, 5 already done" in r.err
    summary = json.loads((tmp_path / "run_summary.json").read_text())  # the whole folder, not this run alone
    assert summary["done"] == [files[1].stem] and sorted(summary["reused"] + summary["done"]) == [
        f.stem for f in files
    ]
    assert files[0].stat().st_mtime_ns == stamp and files[1].exists()
    page = (tmp_path / "report.html").read_text()
    assert "1 bags reported; 5 bags done by an earlier run (--resume) are not shown" in page
    assert page.count("<section") == 1 and f'id="{files[1].stem}"' in page
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".csv") == [
        ".slamctl-infer.lock",  # held while a run writes here (empty)
        "metrics.prom",
        "report.html",
        "run_summary.json",
    ]  # no spool or .tmp file left behind


def test_report_renders_in_chromium_with_every_thumbnail(server, tiny_bags, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed (./test.sh installs Debian's package as root)")
    r = run_cli(
        "infer",
        tiny_bags / "bag_0000",
        tiny_bags / "bag_0001",
        "--url",
        server.grpc_url,
        "--out",
        tmp_path,
        "--report",
        "--top-k",
        4,
    )
    assert r.code == 0, r.err
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chrome'}",
            "--dump-dom",
            (tmp_path / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert 'data-thumbnails="8"' in dom and 'data-thumbnails-loaded="8"' in dom, dom[:500]
    assert dom.count("<svg") == 2 and "bag_0000" in dom and "bag_0001" in dom
    # cells.csv beside the bags: the truly abnormal cells among the top-K are framed and counted
    positives = {
        (r["bag_id"], r["file"])
        for r in csv.DictReader(open(tiny_bags / "cells.csv"))
        if r["positive"] == "1"
    }
    found = total = 0
    for bag in ("bag_0000", "bag_0001"):
        result = json.loads((tmp_path / f"{bag}.json").read_text())
        found += sum((bag, c["file"]) in positives for c in result["top_k"])
        total += sum(b == bag for b, _ in positives)
    assert total > 0 and dom.count('<figure class="truth">') == found
    assert f"Truth (cells.csv): {found} of {total} abnormal cells found among the top 4" in dom


def test_served_threshold_decides_and_the_option_overrides_it(server, tiny_repository, tiny_bags, tmp_path):
    card = json.loads(next((tiny_repository / contract.MODEL_CARD).glob("*/card.json")).read_text())
    bag = tiny_bags / "bag_0001"

    def decision(*args):
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        r = run_cli("infer", bag, "--url", server.grpc_url, "--out", out, *args)
        assert r.code == 0, r.err
        return json.loads((out / "bag_0001.json").read_text())["decision"], r.err

    d, err = decision()
    assert d["threshold"] == card["threshold"] != 0.5 and d["threshold_source"] == "server"
    assert d["label"] == ("abnormal" if d["probability_abnormal"] >= card["threshold"] else "normal")
    assert f"threshold {card['threshold']:.3f} (served: {card['threshold_rule']})" in err
    p = d["probability_abnormal"]
    above, below = decision("--threshold", min(1.0, p + 1e-4)), decision("--threshold", max(0.0, p - 1e-4))
    assert above[0]["label"] == "normal" and below[0]["label"] == "abnormal"
    assert above[0]["threshold_source"] == "--threshold" and "(--threshold)" in above[1]
    r = run_cli("infer", bag, "--url", server.grpc_url, "--out", tmp_path / "x", "--threshold", 1.5)
    assert r.code == 2 and "expected 0 <= threshold <= 1" in r.err


@pytest.mark.parametrize("wire", ["encoded", "pixels"])
def test_bad_files_are_skipped_and_listed(server, tiny_bags, tmp_path, wire):
    bag = shutil.copytree(tiny_bags / "bag_0002", tmp_path / "bag")
    cells = sorted(bag.iterdir())
    cells[0].write_bytes(b"")  # zero-byte
    cells[1].write_bytes(cells[1].read_bytes()[:60])  # truncated
    cells[2].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)  # corrupt
    (bag / "notes.txt").write_text("not an image")
    from tests.client.test_bags import png_header

    (bag / "bomb.png").write_bytes(png_header(30_000, 30_000))  # 4 KB declaring 900 Mpx
    (bag / "strip.png").write_bytes(png_header(1, 4_194_304))  # under the pixel cap: an 87 GB resize
    with open(bag / "sparse.png", "wb") as f:
        f.truncate(300 * 1024 * 1024)  # 300 MB declared, nothing on disk
    r = run_cli("infer", bag, "--url", server.grpc_url, "--out", tmp_path / "out", "--wire", wire)
    assert r.code == 0, r.err
    result = json.loads((tmp_path / "out" / "bag.json").read_text())
    skipped = {s["file"]: s["reason"] for s in result["skipped"]}
    assert set(skipped) == {
        cells[0].name,
        cells[1].name,
        cells[2].name,
        "notes.txt",
        "bomb.png",
        "strip.png",
        "sparse.png",
    }
    assert "more elongated than the 4:1 a cell image may be" in skipped["strip.png"]
    assert "file of 314,572,800 bytes exceeds the 33,554,432" in skipped["sparse.png"]
    assert all(reason for reason in skipped.values())
    assert result["cells"] == len(cells) - 3


def test_non_finite_output_fails_the_bag_instead_of_deciding(server, tiny_bags):
    """A NaN embedding reaching the real aggregator gives NaN probabilities: the bag fails
    as invalid_output, never labelled "normal" with P = NaN."""
    from concurrent.futures import ThreadPoolExecutor

    models = TritonModels(ClientSettings(url=server.grpc_url))
    build = models.aggregator_request
    models.aggregator_request = lambda emb: build(np.full_like(emb, np.nan))
    with ThreadPoolExecutor(2) as pool, pytest.raises(BagFailure) as failed:
        infer_bag(tiny_bags / "bag_0001", models, pool)
    assert failed.value.kind == "invalid_output" and "non-finite output" in str(failed.value)


def test_bag_without_readable_cell_fails_and_others_finish(server, tiny_bags, tmp_path):
    bad = tmp_path / "bags" / "aaa_bad"
    bad.mkdir(parents=True)
    (bad / "x.png").write_bytes(b"junk")
    shutil.copytree(tiny_bags / "bag_0003", tmp_path / "bags" / "bag_0003")
    r = run_cli("infer", tmp_path / "bags", "--url", server.grpc_url, "--out", tmp_path / "out")
    assert r.code == 1
    assert (tmp_path / "out" / "bag_0003.json").exists() and not (tmp_path / "out" / "aaa_bad.json").exists()
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["failed"]["aaa_bad"].startswith("unreadable_image: ")


def test_nonexistent_path_and_server_not_running(tmp_path, tiny_bags):
    r = run_cli("infer", tmp_path / "nope")
    assert r.code == 1 and "no such file or folder" in r.err and r.err.strip().count("\n") == 0
    r = run_cli("infer", tiny_bags / "bag_0000", "--url", "127.0.0.1:1", "--timeout", 2)
    assert r.code == 1 and "cannot reach a Triton server at 127.0.0.1:1" in r.err and "slamctl serve" in r.err
    assert r.err.strip().count("\n") == 0


def test_model_missing_on_server(server, tiny_bags):
    r = run_cli("infer", tiny_bags / "bag_0000", "--url", server.grpc_url, "--encoder-model", "resnet_v9")
    assert r.code == 1 and "model 'resnet_v9' is not ready" in r.err


def test_a_bag_over_the_served_limit_fails_before_any_cell_is_embedded(tiny_models, tiny_bags, tmp_path):
    """The client learns the largest bag from the served model card and refuses a larger bag
    before it sends a single cell: one clean line, no server traceback."""
    from slamctl.export.onnx_export import export_pair
    from slamctl.export.repository import write_repository
    from slamctl.export.settings import RepositorySettings

    repo = tmp_path / "repo"
    pair = export_pair(tiny_models.encoder, tiny_models.aggregator, tmp_path / "onnx", allow_degenerate=True)
    write_repository(pair, repo, settings=RepositorySettings(max_bag_cells=5, opt_bag_cells=5))
    running = start_server(repo, tmp_path)
    try:
        r = run_cli("infer", tiny_bags / "bag_0000", "--url", running.grpc_url, "--out", tmp_path / "out")
    finally:
        stop_server(running.process)
    why = json.loads((tmp_path / "out" / "run_summary.json").read_text())["failed"]["bag_0000"]
    assert r.code == 1 and why.startswith("too_large: ") and "at most 5 cells" in why, why
    # the client's own message, raised before the encoder stream starts (the server's would name its limit)
    assert "Traceback" not in why and " files, the server accepts bags of at most 5 cells" in why


def test_a_bag_named_like_a_run_file_is_refused_before_any_work(server, tiny_bags, tmp_path):
    import shutil

    shutil.copytree(tiny_bags / "bag_0000", tmp_path / "bags" / "run_summary")
    r = run_cli("infer", tmp_path / "bags", "--url", server.grpc_url, "--out", tmp_path / "out")
    assert r.code == 1 and "run_summary: its result would be" in r.err and "rename the bag folder" in r.err
    assert not (tmp_path / "out").exists()
    r = run_cli(
        "infer", tmp_path / "bags", "--url", server.grpc_url, "--out", tmp_path / "out", "--format", "csv"
    )
    assert r.code == 0 and (tmp_path / "out" / "run_summary.csv").exists()  # no clash in csv


def test_an_unwritable_out_is_one_line_and_keeps_what_was_written(server, tiny_bags, tmp_path):
    out = tmp_path / "out"
    (out / "bag_0001.json").mkdir(parents=True)  # the second bag's result path is taken: its write fails
    r = run_cli(
        "infer", tiny_bags / "bag_0000", tiny_bags / "bag_0001", "--url", server.grpc_url, "--out", out
    )
    assert r.code == 1 and "cannot write the results" in r.err and "rerun with --resume" in r.err
    assert "Traceback" not in r.err and r.err.strip().splitlines()[-1].startswith("error: ")
    assert json.loads((out / "bag_0000.json").read_text())["bag"] == "bag_0000"  # the first bag is kept
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind
    (tmp_path / "file.txt").write_text("")
    r = run_cli(
        "infer", tiny_bags / "bag_0000", "--url", server.grpc_url, "--out", tmp_path / "file.txt" / "x"
    )
    assert r.code == 1 and "cannot write the results" in r.err


def test_ssl_against_a_plain_server_says_so(server, tiny_bags, tmp_path):
    r = run_cli(
        "infer", tiny_bags / "bag_0000", "--url", server.grpc_url, "--out", tmp_path, "--ssl", "--timeout", 3
    )
    assert r.code == 1 and "over TLS: if the server does not use TLS, drop --ssl" in r.err
    r = run_cli("health", "--url", server.grpc_url, "--ssl", "--timeout", 3)
    assert r.code == 1 and "drop --ssl" in r.err


def test_deadline_exceeded_marks_the_bag_failed(server, tiny_bags, tmp_path):
    r = run_cli(
        "infer",
        tiny_bags / "bag_0000",
        "--url",
        server.grpc_url,
        "--out",
        tmp_path,
        "--timeout",
        0.0005,
        "--retries",
        1,
    )
    assert r.code == 1
    summary = json.loads((tmp_path / "run_summary.json").read_text())
    assert summary["failed"]["bag_0000"].startswith("timeout: ")


def test_aggregator_request_errors_and_deadline(server, tiny_repository):
    """The aggregator's hand-built request: same numbers as ONNX Runtime; a refused request and
    a deadline become BagFailures of the right kind."""
    models = TritonModels(ClientSettings(url=server.grpc_url, retries=1, backoff=0.01))
    embeddings = np.random.default_rng(0).random((7, models.dim), dtype=np.float32)
    probs, attention = models.aggregate(models.aggregator_request(embeddings))
    agg = ort.InferenceSession(str(tiny_repository / contract.AGGREGATOR / "1" / "model.onnx"))
    want_probs, want_attention = agg.run(None, {contract.EMBEDDINGS: embeddings})
    np.testing.assert_allclose(probs, want_probs, atol=1e-6)
    np.testing.assert_allclose(attention, want_attention, atol=1e-6)
    with pytest.raises(BagFailure) as refused:
        models.aggregate(models.aggregator_request(np.zeros((7, models.dim + 1), np.float32)))
    assert refused.value.kind == "server_error" and str(refused.value).startswith(f"{contract.AGGREGATOR}: ")
    hurried = TritonModels(ClientSettings(url=server.grpc_url, retries=1, backoff=0.01, timeout=1e-6))
    with pytest.raises(BagFailure) as late:
        hurried.aggregate(hurried.aggregator_request(embeddings))
    assert late.value.kind == "timeout"


def test_server_killed_mid_bag_retries_then_fails_that_bag(tiny_repository, tiny_bags, tmp_path):
    running = start_server(tiny_repository, tmp_path)
    try:
        models = TritonModels(
            ClientSettings(
                url=running.grpc_url, batch_size=4, concurrency=1, retries=2, backoff=0.2, timeout=5
            )
        )
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            first = infer_bag(tiny_bags / "bag_0000", models, pool)
            assert len(first.cells) > 0
            killed = threading.Event()

            def kill_after_first_batch(done, total):
                if not killed.is_set():
                    killed.set()
                    stop_server(running.process)

            with pytest.raises(BagFailure) as e:
                infer_bag(tiny_bags / "bag_0001", models, pool, on_batch=kill_after_first_batch)
        assert e.value.kind == "unavailable" and killed.is_set()
    finally:
        stop_server(running.process)


def test_health(server):
    r = run_cli("health", "--url", server.grpc_url)
    assert r.code == 0, r.err
    lines = r.out.strip().splitlines()
    assert (
        lines[0].endswith("live, ready") and len(lines) == 6
    )  # encoder, aggregator, card, file encoder, model id
    assert re.fullmatch(r"model id [0-9a-f]{64} \(version 1, exported .*", lines[5]), lines[5]
    assert lines[1].startswith("model slam_encoder: ready, versions 1") and "IMAGES UINT8" in lines[1]
    r = run_cli("health", "--url", "127.0.0.1:1", "--timeout", 2)
    assert r.code == 1 and "cannot reach a Triton server" in r.err


def test_client_and_server_import_no_torch():
    import sys

    code = (
        "import sys, slamctl.cli.main, slamctl.cli.infer, slamctl.cli.health, slamctl.cli.serve, slamctl.client.bags, "
        "slamctl.client.triton, slamctl.client.report, slamctl.client.run, slamctl.serving.server, slamctl.serving.settings, "
        "slamctl.serving.launcher; assert 'torch' not in sys.modules, 'torch imported'"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_metrics_file_and_port_carry_no_bag_identifier(server, tiny_bags, tmp_path):
    import urllib.request

    from slamctl.serving.launcher import free_ports

    (port,) = free_ports(1)
    r = run_cli(
        "infer", tiny_bags / "bag_0004", "--url", server.grpc_url, "--out", tmp_path, "--metrics-port", port
    )
    assert r.code == 0, r.err
    text = (tmp_path / "metrics.prom").read_text()
    assert re.search(r"^slamctl_cells_total \d+\.0$", text, re.M)
    for model in (contract.ENCODER, contract.AGGREGATOR):
        assert re.search(rf'^slamctl_request_latency_seconds_count{{model="{model}"}} [1-9]', text, re.M)
    assert re.search(r'^slamctl_bags_total{status="ok"} [1-9]', text, re.M)
    assert "bag_0004" not in text and "cell_" not in text
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as served:
        assert "slamctl_bag_latency_seconds_bucket" in served.read().decode()
    assert listening_addresses(port) == ["127.0.0.1"]  # not every interface unless --metrics-host says so


def listening_addresses(port: int) -> list[str]:
    """The IPv4 addresses a TCP port listens on, from /proc/net/tcp."""
    import ipaddress

    found = []
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":  # LISTEN
            found.append(str(ipaddress.IPv4Address(bytes.fromhex(address)[::-1])))
    return found


def test_metrics_pushed_to_a_real_pushgateway(server, tiny_bags, tmp_path):
    import urllib.request

    from slamctl.serving.launcher import free_ports

    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        pytest.fail("prometheus-pushgateway is not installed (./test.sh installs Debian's package as root)")
    (port,) = free_ports(1)
    gateway = f"127.0.0.1:{port}"
    proc = subprocess.Popen(
        [binary, f"--web.listen-address={gateway}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(100):  # ready within seconds
            try:
                urllib.request.urlopen(f"http://{gateway}/-/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        runs = []
        for out in (tmp_path / "first", tmp_path / "second"):  # two runs: two groups, none replaced
            r = run_cli(
                "infer",
                tiny_bags / "bag_0003",
                "--url",
                server.grpc_url,
                "--out",
                out,
                "--pushgateway",
                gateway,
            )
            assert r.code == 0, r.err
            runs.append(json.loads((out / "run_summary.json").read_text())["run_id"])
            assert runs[-1] in r.err  # the pushed run, named
        with urllib.request.urlopen(f"http://{gateway}/metrics", timeout=5) as scraped:
            text = scraped.read().decode()
        for run_id in runs:
            assert re.search(
                rf'^slamctl_bags_total{{instance="",job="slamctl_infer",run="{run_id}",status="ok"}} [1-9]',
                text,
                re.M,
            ), text
            assert re.search(
                rf'^slamctl_cells_total{{instance="",job="slamctl_infer",run="{run_id}"}} [1-9]', text, re.M
            )
        assert runs[0] != runs[1] and "bag_0003" not in text
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    # the gateway gone: one line naming it, and the results are kept
    r = run_cli(
        "infer",
        tiny_bags / "bag_0003",
        "--url",
        server.grpc_url,
        "--out",
        tmp_path / "again",
        "--pushgateway",
        gateway,
    )
    assert r.code == 1 and (tmp_path / "again" / "bag_0003.json").exists()
    assert r.err.strip().splitlines()[-1].startswith(f"error: --pushgateway {gateway}: could not push"), r.err


def test_ctrl_c_and_sigterm_keep_the_bags_done_and_say_how_to_resume(server, tiny_bags, tmp_path):
    import signal
    import sys
    from pathlib import Path

    bags = tmp_path / "bags"
    for i in range(300):
        shutil.copytree(tiny_bags / "bag_0000", bags / f"b{i:03d}")
    exe = shutil.which("slamctl", path=str(Path(sys.executable).parent))
    # the last run with --shm: its shared-memory regions are gone after the interrupt too
    for sig, shm in ((signal.SIGINT, []), (signal.SIGTERM, []), (signal.SIGINT, ["--shm"])):
        out = tmp_path / f"out-{sig.name}{''.join(shm)}"
        proc = subprocess.Popen(
            # one cell per request: the run lasts seconds, so the signal comes in the middle of it
            [exe, "infer", str(bags), "--url", server.grpc_url, "--out", str(out), "--batch-size", "1", *shm],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # as from a terminal: a job started with & in a script inherits SIGINT ignored
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        while proc.poll() is None and not list(out.glob("b*.json")):
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "interrupted: " in err and "rerun with --resume to finish" in err and "Traceback" not in err
        record = json.loads((out / "run_summary.json").read_text())
        assert record["interrupted"] and len(record["done"]) + len(record["interrupted"]) == 300
        assert sorted(p.stem for p in out.glob("b*.json")) == sorted(record["done"])
        assert not list(out.glob(".*.tmp"))
    assert not list(Path("/dev/shm").glob("slamctl_client_*"))
    status = grpcclient.InferenceServerClient(server.grpc_url).get_system_shared_memory_status(
        headers=shm_token.read_headers(server.grpc_url)
    )
    assert not status.regions  # and unregistered
    r = run_cli("infer", bags, "--url", server.grpc_url, "--out", out, "--resume")
    assert r.code == 0, r.err
    assert len(list(out.glob("b*.json"))) == 300


def test_each_result_records_its_provenance(server, tiny_repository, tiny_bags, tmp_path):
    import hashlib

    from slamctl.client.bags import input_digest
    from slamctl.export.card import newest_card

    r = run_cli("infer", tiny_bags / "bag_0002", "--url", server.grpc_url, "--out", tmp_path)
    assert r.code == 0, r.err
    provenance = json.loads((tmp_path / "bag_0002.json").read_text())["provenance"]
    served = {
        name: hashlib.sha256((tiny_repository / name / "1" / "model.onnx").read_bytes()).hexdigest()
        for name in contract.ONNX_MODELS
    }
    assert {n: m["sha256"] for n, m in provenance["models"].items()} == served
    card = newest_card(tiny_repository)
    assert provenance["model_id"] == card.model_id and provenance["model_version"] == 1
    assert provenance["client"]["slamctl"] and provenance["decided_at"].endswith("+00:00")
    files = sorted(p for p in (tiny_bags / "bag_0002").iterdir())
    assert provenance["input_sha256"] == input_digest(
        [(f.name, hashlib.sha256(f.read_bytes()).hexdigest()) for f in files]
    )
    summary = json.loads((tmp_path / "run_summary.json").read_text())
    assert summary["provenance"]["model_id"] == provenance["model_id"]
    assert summary["provenance"]["run_id"] == provenance["run_id"] == summary["run_id"]


def test_pinning_refuses_another_model(server, tiny_bags, tmp_path):
    served = TritonModels(ClientSettings(url=server.grpc_url)).card.model_id
    r = run_cli(
        "infer",
        tiny_bags / "bag_0002",
        "--url",
        server.grpc_url,
        "--out",
        tmp_path / "a",
        "--expect-model",
        "0" * 64,
    )
    assert (
        r.code == 1 and r.err.strip().count("\n") == 0 and "not the pinned one" in r.err and served in r.err
    )
    assert not (tmp_path / "a" / "bag_0002.json").exists()
    r = run_cli(
        "infer",
        tiny_bags / "bag_0002",
        "--url",
        server.grpc_url,
        "--out",
        tmp_path / "b",
        "--model-version",
        2,
    )
    assert r.code == 1 and "--model-version 2: " in r.err and "serves version 1" in r.err
    r = run_cli(
        "infer",
        tiny_bags / "bag_0002",
        "--url",
        server.grpc_url,
        "--out",
        tmp_path / "c",
        "--expect-model",
        "xyz",
    )
    assert r.code == 2 and "expected 12 to 64 hexadecimal digits" in r.err
    r = run_cli(
        "infer",
        tiny_bags / "bag_0002",
        "--url",
        server.grpc_url,
        "--out",
        tmp_path / "d",
        "--expect-model",
        served[:12].upper(),
        "--model-version",
        1,
    )
    assert r.code == 0, r.err


def test_audit_log_verifies_and_reports_a_tampered_result(server, tiny_bags, tmp_path):
    log = tmp_path / "audit.jsonl"
    r = run_cli("infer", tiny_bags, "--url", server.grpc_url, "--out", tmp_path / "out", "--audit-log", log)
    assert r.code == 0, r.err
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 6 and {line["event"] for line in lines} == {"decision"}
    assert lines[0]["prev"] == "" and all(len(line["provenance"]["input_sha256"]) == 64 for line in lines)
    r = run_cli("audit", "verify", log, tmp_path / "out")
    assert r.code == 0 and "6 of 6 result files match their line" in r.out, r.err
    result = tmp_path / "out" / "bag_0003.json"
    data = json.loads(result.read_text())
    data["decision"]["label"] = "normal" if data["decision"]["label"] == "abnormal" else "abnormal"
    result.write_text(json.dumps(data))
    r = run_cli("audit", "verify", log, tmp_path / "out")
    assert r.code == 1 and f"FAIL {result}: changed since it was logged (bag bag_0003" in r.err


def test_audit_log_survives_a_killed_client_with_whole_lines(server, tiny_bags, tmp_path):
    import signal
    import sys
    from pathlib import Path

    bags = tmp_path / "bags"
    for i in range(200):
        shutil.copytree(tiny_bags / "bag_0000", bags / f"b{i:03d}")
    exe = shutil.which("slamctl", path=str(Path(sys.executable).parent))
    out, log = tmp_path / "out", tmp_path / "audit.jsonl"
    cmd = [exe, "infer", str(bags), "--url", server.grpc_url, "--out", str(out), "--audit-log", str(log)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and len(list(out.glob("b*.json"))) < 5:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    data = log.read_bytes()
    assert data.endswith(b"\n") and all(json.loads(line) for line in data.splitlines())  # whole lines only
    written = len(list(out.glob("b*.json")))
    assert 5 <= written < 200 and len(data.splitlines()) in (written, written + 1)  # logged before written
    r = run_cli("infer", bags, "--url", server.grpc_url, "--out", out, "--audit-log", log, "--resume")
    assert r.code == 0, r.err
    r = run_cli("audit", "verify", log, out)
    assert r.code == 0 and "200 of 200 result files match their line" in r.out, r.err


def test_encoded_wire_gives_the_pixel_paths_embeddings_and_skips(server, tiny_bags, tmp_path):
    """--wire encoded: the files' bytes go to slam_encoder_files, which decodes them with the
    client's code: the same embeddings, decisions and skipped files as --wire pixels."""
    from slamctl.images import prepare_cell

    bag = shutil.copytree(tiny_bags / "bag_0001", tmp_path / "bag")
    (bag / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    files = sorted(f for f in bag.iterdir() if f.name != "zz_broken.png")
    client = grpcclient.InferenceServerClient(server.grpc_url)
    blobs = np.empty((len(files) + 1, 1), dtype=np.object_)
    blobs[:, 0] = [f.read_bytes() for f in files] + [(bag / "zz_broken.png").read_bytes()]
    inp = grpcclient.InferInput(contract.CELL_FILES, list(blobs.shape), "BYTES")
    inp.set_data_from_numpy(blobs)
    answer = client.infer(contract.FILE_ENCODER, [inp], client_timeout=60)
    card = TritonModels(ClientSettings(url=server.grpc_url)).card
    images = np.stack([prepare_cell(f, card.image_size, card.input_size) for f in files])
    pixels = grpcclient.InferInput(contract.IMAGES, list(images.shape), "UINT8")
    pixels.set_data_from_numpy(images)
    want = client.infer(contract.ENCODER, [pixels], client_timeout=60).as_numpy(contract.EMBEDDINGS)
    np.testing.assert_array_equal(answer.as_numpy(contract.EMBEDDINGS)[:-1], want)
    errors = [e[0].decode() for e in answer.as_numpy(contract.CELL_ERRORS)]
    assert errors[:-1] == [""] * len(files) and errors[-1].startswith("not a readable image")
    results = {}
    for wire in ("pixels", "encoded"):
        r = run_cli("infer", bag, "--url", server.grpc_url, "--out", tmp_path / wire, "--wire", wire)
        assert r.code == 0, r.err
        results[wire] = json.loads((tmp_path / wire / "bag.json").read_text())
    for key in ("decision", "top_k", "skipped", "cells"):
        assert results["pixels"][key] == results["encoded"][key], key
    assert results["pixels"]["skipped"][0]["file"] == "zz_broken.png"
    r = run_cli("infer", bag, "--url", server.grpc_url, "--out", tmp_path / "x", "--wire", "jpeg")
    assert r.code == 2 and "pixels" in r.err and "encoded" in r.err


def test_resume_reuses_only_the_results_of_the_served_model(server, tiny_bags, tmp_path):
    r = run_cli("infer", tiny_bags / "bag_0002", "--url", server.grpc_url, "--out", tmp_path)
    assert r.code == 0, r.err
    path = tmp_path / "bag_0002.json"
    served = json.loads(path.read_text())["provenance"]["model_id"]
    r = run_cli("infer", tiny_bags / "bag_0002", "--url", server.grpc_url, "--out", tmp_path, "--resume")
    assert r.code == 0 and json.loads((tmp_path / "run_summary.json").read_text())["reused"] == ["bag_0002"]
    data = json.loads(path.read_text())
    data["provenance"]["model_id"] = "0" * 64  # as if another model had decided it
    path.write_text(json.dumps(data))
    r = run_cli("infer", tiny_bags / "bag_0002", "--url", server.grpc_url, "--out", tmp_path, "--resume")
    assert r.code == 0 and "1 results were inferred again (made by another model" in r.err
    assert json.loads((tmp_path / "run_summary.json").read_text())["redone"] == ["bag_0002"]
    assert json.loads(path.read_text())["provenance"]["model_id"] == served


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_resume_never_reuses_a_stale_or_edited_decision(server, tiny_bags, tmp_path, fmt):
    """Same model, but the bag's cells changed (one replaced by another bag's, one added as
    if still being copied), or the result was edited by hand, is a FIFO or nested too deep:
    the bag is inferred again, never reused, and nothing hangs."""
    bag = shutil.copytree(tiny_bags / "bag_0002", tmp_path / "bags" / "bag_0002")
    out, path = tmp_path / "out", tmp_path / "out" / f"bag_0002.{fmt}"
    args = ("infer", bag, "--url", server.grpc_url, "--out", out, "--format", fmt, "--resume")

    def redone() -> list:
        r = run_cli(*args)
        assert r.code == 0, r.err
        return json.loads((out / "run_summary.json").read_text())["redone"]

    assert redone() == [] and redone() == []  # the first run, then a reuse
    other = sorted((tiny_bags / "bag_0001").iterdir())[0]
    shutil.copy(other, next(iter(sorted(bag.iterdir()))))  # a cell replaced, same name
    assert redone() == ["bag_0002"] and redone() == []
    shutil.copy(other, bag / "zz_late.png")  # a cell arrived after the first run
    assert redone() == ["bag_0002"] and redone() == []
    flip = {"normal": "abnormal", "abnormal": "normal"}
    if fmt == "json":
        data = json.loads(path.read_text())
        data["decision"]["label"] = flip[data["decision"]["label"]]
        path.write_text(json.dumps(data))  # a hand-edited decision, its seal kept
    else:
        rows = list(csv.reader(open(path)))
        rows[1][1] = flip[rows[1][1]]
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(rows)
    assert redone() == ["bag_0002"] and read_written(path, fmt) is not None
    path.unlink()
    os.mkfifo(path)  # a FIFO at the result path: read_written must not block on it
    assert redone() == ["bag_0002"] and path.is_file()
    path.write_text("[" * 100_000 + "]" * 100_000)  # nested too deep for json
    assert redone() == ["bag_0002"]


@pytest.mark.parametrize(
    "option, value",
    [
        ("--concurrency", 0),  # hung for good before
        ("--concurrency", -1),
        ("--decode-threads", 0),
        ("--retries", -1),
        ("--retries", 5),  # gRPC's retry policy allows 5 attempts
        ("--batch-size", 0),
        ("--timeout", 0),
        ("--top-k", -1),
        ("--report-cells", -3),
    ],
)
def test_numeric_options_out_of_range_are_refused_before_any_work(tmp_path, option, value):
    r = run_cli("infer", tmp_path, "--url", "127.0.0.1:1", "--out", tmp_path / "out", option, value)
    text = " ".join((r.out + r.err).replace("│", " ").split())  # Typer's error box, unwrapped
    assert r.code == 2 and f"Invalid value for '{option}'" in text and "Traceback" not in text
    assert not (tmp_path / "out").exists()


def test_rich_markup_in_names_and_paths_is_printed_as_it_is(server, tiny_bags, tmp_path):
    """A bag named "[bold red]slide01" shows under that name, and an --out of 'o[/x]' (a
    closing tag with no opening one) is no MarkupError after the run."""
    bags = tmp_path / "bags"
    shutil.copytree(tiny_bags / "bag_0001", bags / "[bold red]slide01")
    r = run_cli("infer", bags, "--url", server.grpc_url, "--out", tmp_path / "o[/x]")
    assert r.code == 0 and "Traceback" not in r.err, r.err
    assert "[bold red]slide01" in r.err and str(tmp_path / "o[/x]") in " ".join(r.err.split())
    assert (tmp_path / "o[/x]" / "[bold red]slide01.json").is_file()


def test_out_inside_the_bags_a_bag_given_as_dot_and_two_runs_on_one_out(
    server, tiny_bags, tmp_path, monkeypatch
):
    """--out inside the folder of bags is refused (its results would be a failed bag on every
    later run); a bag given as `.` is named after its folder; a second run on an --out that
    another run holds is refused instead of overwriting its summary, report and metrics."""
    from slamctl.client.run import lock_out

    bags = shutil.copytree(tiny_bags, tmp_path / "bags", ignore=shutil.ignore_patterns("*.csv"))
    for out in (bags / "results", bags / "bag_0001" / "r", bags):
        r = run_cli("infer", bags, "--url", server.grpc_url, "--out", out)
        assert r.code == 1 and "lies inside" in r.err and "choose a folder outside them" in r.err, r.err
        assert not (bags / "results").exists()
    monkeypatch.chdir(bags / "bag_0001")
    r = run_cli("infer", ".", "--url", server.grpc_url, "--out", tmp_path / "dot")
    assert r.code == 0, r.err
    assert [p.name for p in (tmp_path / "dot").glob("*.json") if p.name != "run_summary.json"] == [
        "bag_0001.json"
    ]
    held = lock_out(tmp_path / "dot")  # another run writing into the same --out
    try:
        r = run_cli("infer", bags / "bag_0002", "--url", server.grpc_url, "--out", tmp_path / "dot")
        assert r.code == 1 and "another slamctl infer is writing there" in r.err
    finally:
        os.close(held)
    assert run_cli("infer", bags / "bag_0002", "--url", server.grpc_url, "--out", tmp_path / "dot").code == 0
