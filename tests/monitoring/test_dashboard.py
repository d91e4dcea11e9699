"""A real Prometheus (Debian's package) scrapes the embedded server; every PromQL expression
of the Grafana dashboard is run against it and must evaluate without error."""

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from slamctl import contract
from slamctl.serving.launcher import free_ports
from tests.conftest import run_cli

DASHBOARD = Path(__file__).parents[2] / "monitoring" / "grafana" / "dashboards" / "slamctl.json"

pytestmark = pytest.mark.slow


def dashboard_expressions():
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def query(base, expr):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:  # Prometheus answers 400 with a JSON error body
        return json.loads(e.read())


@pytest.fixture(scope="module")
def prometheus(server, tiny_bags, tmp_path_factory):
    """Prometheus scraping the embedded server and a `slamctl infer --metrics-port` client."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed (./test.sh installs Debian's package as root)")
    tmp_path = tmp_path_factory.mktemp("prometheus")
    port, client_port = free_ports(2)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: triton\n    static_configs: [{{targets: ['127.0.0.1:{server.metrics_port}']}}]\n"
        f"  - job_name: slamctl-client\n    static_configs: [{{targets: ['127.0.0.1:{client_port}']}}]\n"
    )
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "prometheus.log", "w"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                result = query(base, 'up{job="triton"}')["data"]["result"]
                if result and result[0]["value"][1] == "1":
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(
                f"Prometheus did not scrape the server: {(tmp_path / 'prometheus.log').read_text()[-1000:]}"
            )
        traffic(server, tiny_bags, tmp_path, client_port, base)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def traffic(server, tiny_bags, tmp_path, client_port, base) -> None:
    """Real traffic seen by two scrapes at least: a client run serving its metrics (the
    server stays up in this process), a bag with an unreadable cell (a client error), then
    a second run once Prometheus scrapes the client."""
    bags = tmp_path / "bags"
    shutil.copytree(tiny_bags / "bag_0000", bags / "bag_0000")
    (bags / "bag_0000" / "broken.png").write_bytes(b"not a png")
    first = run_cli(
        "infer", bags, "--url", server.grpc_url, "--out", tmp_path / "a", "--metrics-port", client_port
    )
    assert first.code == 0, first.err
    deadline = time.monotonic() + 30
    while not [r for r in query(base, 'up{job="slamctl-client"} == 1')["data"]["result"]]:
        assert time.monotonic() < deadline, "Prometheus did not scrape the client"
        time.sleep(0.5)
    for _ in range(3):
        assert run_cli("infer", bags, "--url", server.grpc_url, "--out", tmp_path / "b").code == 0
        time.sleep(1.5)


GPU_ONLY = "nv_gpu_"  # Triton exports GPU metrics only on a GPU host


def test_every_dashboard_expression_returns_data(prometheus):
    """Every panel answers with numbers after real traffic: a misnamed metric gives an empty
    answer, which Prometheus reports as success."""
    for expr in dashboard_expressions():
        if GPU_ONLY in expr:
            continue
        answer = query(prometheus, expr)
        assert answer["status"] == "success", (expr, answer.get("error"))
        values = [float(r["value"][1]) for r in answer["data"]["result"]]
        assert any(v == v for v in values), f"no data (or only NaN) for {expr}: {answer['data']['result']}"


def test_every_dashboard_expression_evaluates(prometheus):
    exprs = dashboard_expressions()
    assert len(exprs) >= 12
    for expr in exprs:
        answer = query(prometheus, expr)
        assert answer["status"] == "success", (expr, answer.get("error"))


def test_triton_latency_series_are_scraped(prometheus):
    result = query(prometheus, "nv_inference_request_duration_us")["data"]["result"]
    assert {r["metric"]["model"] for r in result} == set(
        contract.SERVED_MODELS
    )  # the client reads the card too


def test_a_broken_expression_would_be_caught(prometheus):
    assert query(prometheus, "sum by (model) (rate(nv_inference_count[1m])")["status"] == "error"


def test_durations_are_divided_by_requests_not_by_inferences():
    """Triton adds a whole batch's compute time to every request of the batch: a duration
    per request divides by nv_inference_request_success, never by nv_inference_count."""
    durations = [e for e in dashboard_expressions() if "_duration_us" in e]
    assert len(durations) >= 3
    for expr in durations:
        assert "nv_inference_request_success" in expr and "nv_inference_count" not in expr, expr
