"""Running `slamctl serve` as a child process: start on free ports, wait until every model
is ready, stop with SIGTERM. Used by the tests, the benchmarks and the demo."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from slamctl import contract
from slamctl.errors import SlamError


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@dataclass
class RunningServer:
    process: subprocess.Popen
    grpc_url: str
    metrics_url: str
    metrics_port: int
    log: Path

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
            return r.read().decode()


def start_server(
    repository: Path, workdir: Path, timeout: float = 90.0, threads: int = 1, extra: tuple[str, ...] = ()
) -> RunningServer:
    """`slamctl serve` as a real subprocess on free ports (more options in `extra`); returns
    once its models are ready."""
    grpc, http, metrics = free_ports(3)
    log = workdir / "serve.log"
    exe = shutil.which("slamctl", path=str(Path(sys.executable).parent)) or "slamctl"
    cmd = [
        exe,
        "serve",
        "--repository",
        str(repository),
        "--grpc-port",
        str(grpc),
        "--http-port",
        str(http),
        "--metrics-port",
        str(metrics),
        "--threads",
        str(threads),
        "--log-file",
        str(workdir / "triton.log"),
        *extra,
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SlamError(f"slamctl serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        # the embedded server is live before it has loaded the models: wait for all
        # (urlopen raises for any answer but 2xx)
        try:
            for model in contract.SERVED_MODELS:
                urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/{model}/ready", timeout=2).close()
            return RunningServer(
                proc, f"127.0.0.1:{grpc}", f"http://127.0.0.1:{metrics}/metrics", metrics, log
            )
        except OSError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise SlamError(f"slamctl serve not ready after {timeout} s: {log.read_text()[-2000:]}")


def stop_server(proc, timeout: float = 30.0) -> int:
    """SIGTERM, as an orchestrator would; SIGKILL the group if it does not stop in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode
