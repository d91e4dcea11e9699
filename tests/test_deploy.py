"""The deployment files cannot be run here (no Docker engine, no cluster); these tests check
what can be checked: they parse, every file they name exists, ports and health paths agree
with the server, images are pinned, and the server image runs unprivileged."""

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]


def test_dockerfile_pins_triton_runs_unprivileged_and_checks_health():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:\d\d\.\d\d-py3", text)
    server = text.split("AS server", 1)[1].split("AS client", 1)[0]
    assert "USER triton-server" in server and "/v2/health/ready" in server and "--start-period=900s" in server
    # NVIDIA's entrypoint (driver checks) kept; Triton's flags as CMD, configs never auto-completed
    assert 'ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh"]' in server
    assert re.search(r'^CMD \["tritonserver", .*"--disable-auto-complete-config"', server, re.M)
    for src in re.findall(r"^COPY (?:--chown=\S+ )?(\S+)", text, re.M):
        assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
    client = text.split("AS client", 1)[1]
    assert "torch" not in client and "USER slamctl" in client


def test_compose_mounts_existing_files_and_provisions_the_dashboard():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"triton", "prometheus", "grafana", "pushgateway", "client"} <= set(services)
    for service in services.values():
        for volume in service.get("volumes", []):
            src = volume.split(":")[0]
            if src.startswith("./monitoring"):  # ./data is the user's own folder
                assert (ROOT / src).exists(), src
        image = service.get("image", "")
        assert not image.endswith(":latest")
    prom = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert "triton:8002" in targets
    provider = yaml.safe_load((ROOT / "monitoring/grafana/provisioning/dashboards/slamctl.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    json.loads((ROOT / "monitoring/grafana/dashboards/slamctl.json").read_text())


def test_kubernetes_manifests_probe_triton_and_scale_on_queue_time():
    docs = [
        d
        for f in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
        for d in yaml.safe_load_all(f.read_text())
    ]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "InferenceService"} <= kinds
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert any(m["mountPath"] == "/trt_cache" for m in container["volumeMounts"])
    assert deploy["spec"]["replicas"] >= 2
    rules = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["rules.yaml"]
    assert "nv_inference_queue_duration_us" in rules
