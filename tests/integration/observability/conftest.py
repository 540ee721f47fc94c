"""A cluster for the metrics and status page tests: real Redis, three worker
processes each serving its probe endpoint (``metrics_port``), the provider
simulator as the model, and one ``agent-cluster serve`` gateway."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from agent.simulator import ProviderSimulator
from cluster.keys import Keyspace
from cluster.versions import RedisVersionStore
from tests.conftest import RedisServer, free_port, sim_config, sim_endpoints_env
from tests.support.fleet import FAST, Fleet, fleet

WORKERS = ("m1", "m2", "m3")


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus endpoint: (name, sorted labels) -> value."""
    text = httpx.get(url, timeout=10).raise_for_status().text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


@dataclass
class ObservedCluster:
    """Redis, the workers (with their probe ports), the simulator and the gateway."""

    redis_url: str
    namespace: str
    fleet: Fleet
    sim: ProviderSimulator
    gateway_url: str
    tmp: Path
    probe_ports: dict[str, int] = field(default_factory=dict)

    def worker_url(self, worker_id: str, path: str = "/metrics") -> str:
        return f"http://127.0.0.1:{self.probe_ports[worker_id]}{path}"

    def start_worker(self, worker_id: str, *, wait: bool = True) -> None:
        port = free_port()
        self.probe_ports[worker_id] = port
        self.fleet.env = {**self.fleet.env, "AGENT_CLUSTER_METRICS_PORT": str(port)}
        self.fleet.start(worker_id, wait=wait)

    def worker_samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The samples of every running worker, summed by (name, labels)."""
        total: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for worker_id, proc in self.fleet.procs.items():
            if proc.poll() is None and worker_id in self.probe_ports:
                for key, v in scrape(self.worker_url(worker_id)).items():
                    total[key] = total.get(key, 0.0) + v
        return total


def start_gateway(redis_url: str, namespace: str, tmp: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    log = tmp / "gateway.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "coordinator.cli",
                "serve",
                "--anonymous",
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
            ],
            env={**os.environ, **FAST},
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return url, proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"gateway did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)


@pytest.fixture
def observed(redis_server: RedisServer, tmp_path: Path) -> Iterator[ObservedCluster]:
    namespace = f"o{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(redis_server.url)
    with (
        ProviderSimulator() as sim,
        fleet(redis_server.url, namespace, tmp_path, **sim_endpoints_env(sim)) as workers,
    ):
        RedisVersionStore(client, Keyspace(namespace)).publish_config(
            sim_config(),
            author="test",
        )
        made = ObservedCluster(redis_server.url, namespace, workers, sim, "", tmp_path)
        for worker_id in WORKERS:
            made.start_worker(worker_id, wait=False)
        for worker_id in WORKERS:
            workers.wait_live(worker_id)
        made.gateway_url, proc = start_gateway(redis_server.url, namespace, tmp_path)
        try:
            yield made
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    for key in client.scan_iter(match=f"{namespace}:*", count=1000):
        client.delete(key)
    for key in client.scan_iter(match=f"rq:*{namespace}*", count=1000):
        client.delete(key)
    client.close()
