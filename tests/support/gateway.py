"""``agent-cluster serve`` processes for tests: start one on a free port, stop it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from coordinator.http.auth import key_digest
from tests.conftest import free_port
from tests.support.fleet import FAST

API_KEY = "gw-test-key-" + "7" * 20
OTHER_KEY = "gw-test-key-other-" + "3" * 14
ADMIN_TOKEN = "gw-admin-" + "5" * 24


@dataclass
class Gateway:
    """One ``agent-cluster serve`` process."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, *, key: str | None = API_KEY, timeout: float = 60.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)


def start_gateway(redis_url: str, namespace: str, tmp: Path, name: str, **env: str) -> Gateway:
    port = free_port()
    log = tmp / f"gateway-{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "coordinator.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--redis-url",
                redis_url,
                "--namespace",
                namespace,
                "--turn-timeout",
                "60",
                "--max-body-bytes",
                "65536",
            ],
            env={
                **os.environ,
                **FAST,
                "AGENT_CLUSTER_API_KEY_SHA256": f"{key_digest(API_KEY)},{key_digest(OTHER_KEY)}",
                "AGENT_CLUSTER_ADMIN_TOKEN": ADMIN_TOKEN,
                **env,
            },
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    gateway = Gateway(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{gateway.url}/healthz", timeout=1).status_code == 200:
                return gateway
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"gateway did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
