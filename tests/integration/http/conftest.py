"""A cluster for the HTTP tests: real Redis, three worker processes, the provider
simulator as the model, and two gateway processes (``agent-cluster serve``) on
free loopback ports, both serving the same cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from agent.simulator import ProviderSimulator
from cluster.endpoints import Endpoint
from cluster.keys import Keyspace
from cluster.versions import RedisVersionStore
from coordinator.http.auth import key_digest
from tests.conftest import RedisServer, free_port, sim_config, sim_endpoints_env
from tests.integration.faults.fleet import FAST, Fleet, fleet

API_KEY = "gw-test-key-" + "7" * 20
OTHER_KEY = "gw-test-key-other-" + "3" * 14
ADMIN_TOKEN = "gw-admin-" + "5" * 24
WORKERS = ("h1", "h2", "h3")


@dataclass
class Gateway:
    """One ``agent-cluster serve`` process."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, *, key: str | None = API_KEY, timeout: float = 60.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)


@dataclass
class HttpCluster:
    """The cluster under test: its Redis, workers, simulator and two gateways."""

    redis_url: str
    namespace: str
    fleet: Fleet
    sim: ProviderSimulator
    gateways: tuple[Gateway, Gateway]

    @property
    def a(self) -> Gateway:
        return self.gateways[0]

    @property
    def b(self) -> Gateway:
        return self.gateways[1]

    def admin(self, gateway: Gateway | None = None) -> httpx.Client:
        return (gateway or self.a).client(key=ADMIN_TOKEN)


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


DEAD_ENDPOINT = Endpoint("dead", "openai", "http://127.0.0.1:9/v1", "OPENAI_API_KEY")
"""An endpoint the workers declare where nothing listens (a failing provider)."""


@pytest.fixture(scope="module")
def cluster(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpCluster]:
    namespace = f"h{uuid.uuid4().hex[:10]}"
    tmp = tmp_path_factory.mktemp("http")
    client = redis.Redis.from_url(redis_server.url)
    with ProviderSimulator() as sim, fleet(
        redis_server.url, namespace, tmp, **sim_endpoints_env(sim, DEAD_ENDPOINT)
    ) as workers:
        RedisVersionStore(client, Keyspace(namespace)).publish_config(sim_config())
        for worker_id in WORKERS:
            workers.start(worker_id, wait=False)
        for worker_id in WORKERS:
            workers.wait_live(worker_id)
        a = start_gateway(redis_server.url, namespace, tmp, "a")
        try:
            b = start_gateway(redis_server.url, namespace, tmp, "b")
            try:
                yield HttpCluster(redis_server.url, namespace, workers, sim, (a, b))
            finally:
                stop(b.process)
        finally:
            stop(a.process)
    for key in client.scan_iter(match=f"{namespace}:*", count=1000):
        client.delete(key)
    for key in client.scan_iter(match=f"rq:*{namespace}*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def session_key() -> str:
    return f"chat-{uuid.uuid4().hex[:12]}"
