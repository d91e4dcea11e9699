"""The deployment files cannot be run here (no Docker engine, no cluster); these tests check
what can be checked: they parse, every file they name exists, ports and health paths agree
with the server, images are pinned, and the server image runs unprivileged."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]


def test_dockerfile_pins_triton_runs_unprivileged_and_checks_health():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:\d\d\.\d\d-py3", text)
    server = text.split("AS server", 1)[1].split("AS client", 1)[0]
    assert "USER triton-server" in server and "/v2/health/ready" in server and "--start-period=900s" in server
    # NVIDIA's entrypoint (driver checks) kept; Triton's flags as CMD, configs never auto-completed
    assert 'ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh"]' in server
    assert (
        'CMD ["slamctl-triton-serve"]' in server
        and "COPY deploy/triton-serve.sh /usr/local/bin/slamctl-triton-serve" in server
    )
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
    assert "triton:8002" in targets and "client:9095" in targets
    assert prom["rule_files"] == ["alerts.yml"]
    mounts = services["prometheus"]["volumes"]
    assert "./monitoring/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts
    for service in services.values():  # published ports on localhost only
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port
    provider = yaml.safe_load((ROOT / "monitoring/grafana/provisioning/dashboards/slamctl.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    json.loads((ROOT / "monitoring/grafana/dashboards/slamctl.json").read_text())


def kubernetes_docs() -> list[dict]:
    return [
        d
        for f in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
        if f.name != "prometheus-adapter-values.yaml"  # Helm values, not a manifest
        for d in yaml.safe_load_all(f.read_text())
    ]


def one(docs, kind):
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


CUSTOM_RESOURCES = {
    "InferenceService",
    "ServiceMonitor",
    "PrometheusRule",
}  # no schema in kubernetes-validate


def test_kubernetes_manifests_validate_against_the_schemas():
    import kubernetes_validate

    docs = kubernetes_docs()
    assert {d["kind"] for d in docs} >= {
        "StatefulSet",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }
    for doc in docs:
        if doc["kind"] not in CUSTOM_RESOURCES:
            kubernetes_validate.validate(doc, "1.30.0", strict=True)  # raises on any schema error
    bad = dict(one(docs, "PodDisruptionBudget"), spec={"minAvailable": 1, "selectorr": {}})
    with pytest.raises(kubernetes_validate.ValidationError):  # the check can fail
        kubernetes_validate.validate(bad, "1.30.0", strict=True)


def test_triton_pod_is_restricted_has_its_gpu_and_a_writable_cache():
    docs = kubernetes_docs()
    sts = one(docs, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    # Pod Security "restricted"
    assert (
        pod["securityContext"]["runAsNonRoot"]
        and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    )
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert not any("hostPath" in v for v in pod["volumes"])  # fsGroup does not apply to hostPath
    # the engine cache: a claim per replica, owned through fsGroup by the image's uid 1000
    assert pod["securityContext"]["fsGroup"] == 1000
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["trt-cache"]
    assert {"name": "trt-cache", "mountPath": "/trt_cache"} in container["volumeMounts"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    # probes: production Triton loads every model before it listens (strict readiness)
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    env = {e["name"]: e for e in container["env"]}
    assert env["SLAMCTL_TLS_CERT"]["value"].startswith("/certs/") and any(
        m["mountPath"] == "/certs" for m in container["volumeMounts"]
    )
    assert sts["spec"]["replicas"] >= 2
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"


def test_scraping_alerts_and_the_adapter_rule_agree():
    docs = kubernetes_docs()
    service, monitor = one(docs, "Service"), one(docs, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    relabelled = {r["targetLabel"] for r in monitor["spec"]["endpoints"][0]["relabelings"]}
    values = yaml.safe_load((ROOT / "deploy/kubernetes/prometheus-adapter-values.yaml").read_text())
    (rule,) = values["rules"]["custom"]  # the chart reads custom rules from rules.custom
    assert {"namespace", "pod"} <= relabelled and 'namespace!="",pod!=""' in rule["seriesQuery"]
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == rule["name"]["as"]
    # the PrometheusRule holds exactly the compose stack's rules
    alerts = yaml.safe_load((ROOT / "monitoring/alerts.yml").read_text())
    assert one(docs, "PrometheusRule")["spec"]["groups"] == alerts["groups"]
    assert "prometheus.io/scrape" not in json.dumps(docs)  # ignored by the Prometheus Operator


def test_kserve_declares_grpc_and_a_cache_volume():
    predictor = one(kubernetes_docs(), "InferenceService")["spec"]["predictor"]
    triton = predictor["triton"]
    assert [p["name"] for p in triton["ports"]] == ["h2c"]  # the client speaks gRPC only
    (mount,) = triton["volumeMounts"]
    assert mount["mountPath"] == "/trt_cache" and mount["name"] in {v["name"] for v in predictor["volumes"]}


def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed (./test.sh installs Debian's prometheus package as root)")
    return binary


def test_alert_rules_check_and_pass_their_unit_tests():
    monitoring = ROOT / "monitoring"
    check = subprocess.run(
        [promtool(), "check", "rules", "alerts.yml"], cwd=monitoring, capture_output=True, text=True
    )
    assert check.returncode == 0 and "SUCCESS: 5 rules found" in check.stdout, check.stdout + check.stderr
    unit = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"], cwd=monitoring, capture_output=True, text=True
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_alert_unit_tests_fail_when_a_threshold_changes(tmp_path):
    """The negative control of the rule tests: a changed threshold is caught."""
    for name in ("alerts.yml", "alerts_test.yml"):
        shutil.copy(ROOT / "monitoring" / name, tmp_path / name)
    rules = tmp_path / "alerts.yml"
    rules.write_text(rules.read_text().replace("> 0.05", "> 0.5"))
    unit = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert unit.returncode != 0 and "SlamctlInferenceFailures" in unit.stdout + unit.stderr


def run_serve_script(tmp_path, **env):
    """deploy/triton-serve.sh with a stand-in tritonserver that prints its arguments."""
    fake = tmp_path / "tritonserver"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    environ = {"PATH": f"{tmp_path}:/usr/bin:/bin", **env}
    return subprocess.run(
        ["sh", str(ROOT / "deploy" / "triton-serve.sh"), "--log-verbose=1"],
        env=environ,
        capture_output=True,
        text=True,
    )


def test_image_command_hardens_triton_and_turns_on_tls(tmp_path):
    plain = run_serve_script(tmp_path)
    args = plain.stdout.splitlines()
    assert (
        plain.returncode == 0
        and "--disable-auto-complete-config" in args
        and "--strict-readiness=true" in args
    )
    (grpc,) = [a for a in args if a.startswith("--grpc-restricted-protocol=")]
    assert grpc.startswith(
        "--grpc-restricted-protocol=model-repository,shared-memory,statistics,trace,logging:slamctl-admin="
    )
    assert len(grpc.rsplit("=", 1)[1]) == 32  # a random token when none is given
    assert args[-1] == "--log-verbose=1" and not any(a.startswith("--grpc-use-ssl") for a in args)
    tls = run_serve_script(
        tmp_path,
        SLAMCTL_TLS_CERT="/certs/tls.crt",
        SLAMCTL_TLS_KEY="/certs/tls.key",
        SLAMCTL_ADMIN_TOKEN="s3cret",
    )
    args = tls.stdout.splitlines()
    assert "--grpc-use-ssl=true" in args and "--grpc-server-cert=/certs/tls.crt" in args
    assert (
        "--http-restricted-api=model-repository,shared-memory,statistics,trace,logging:slamctl-admin=s3cret"
        in args
    )
    half = run_serve_script(tmp_path, SLAMCTL_TLS_CERT="/certs/tls.crt")
    assert half.returncode != 0 and "set SLAMCTL_TLS_KEY" in half.stderr


def test_image_command_flags_parse_in_the_real_tritonserver(tmp_path):
    """The flags of deploy/triton-serve.sh against Triton 2.51's own parser (PyTriton's binary,
    the version the image pins): a misspelt flag or format prints Usage and exits."""
    import pytriton

    args = run_serve_script(tmp_path).stdout.splitlines()
    triton = Path(pytriton.__file__).parent / "tritonserver"
    env = {"LD_LIBRARY_PATH": f"{triton / 'external_libs'}:{triton / 'lib'}", "PATH": "/usr/bin:/bin"}
    from slamctl.serving.launcher import free_ports

    http, grpc, metrics = free_ports(3)
    ports = [f"--http-port={http}", f"--grpc-port={grpc}", f"--metrics-port={metrics}"]
    run = subprocess.run(
        [str(triton / "bin" / "tritonserver"), *args, *ports, "--exit-timeout-secs=1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = run.stdout + run.stderr
    assert "Usage: tritonserver" not in output and "Unexpected argument" not in output, output[-2000:]
    assert "/models" in output  # it got past the flags to the (absent) repository
