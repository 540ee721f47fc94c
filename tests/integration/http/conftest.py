"""A cluster for the HTTP tests: real Redis, three worker processes, the provider
simulator as the model, and two gateway processes (``agent-cluster serve``) on
free loopback ports, both serving the same cluster."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from agent.simulator import ProviderSimulator
from cluster.endpoints import Endpoint
from cluster.keys import Keyspace
from cluster.versions import RedisVersionStore
from tests.conftest import RedisServer, sim_config, sim_endpoints_env
from tests.support.fleet import Fleet, fleet
from tests.support.gateway import ADMIN_TOKEN, Gateway, start_gateway, stop

WORKERS = ("h1", "h2", "h3")


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


DEAD_ENDPOINT = Endpoint("dead", "openai", "http://127.0.0.1:9/v1", "OPENAI_API_KEY")
"""An endpoint the workers declare where nothing listens (a failing provider)."""


@pytest.fixture(scope="module")
def cluster(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpCluster]:
    namespace = f"h{uuid.uuid4().hex[:10]}"
    tmp = tmp_path_factory.mktemp("http")
    client = redis.Redis.from_url(redis_server.url)
    with (
        ProviderSimulator() as sim,
        fleet(redis_server.url, namespace, tmp, **sim_endpoints_env(sim, DEAD_ENDPOINT)) as workers,
    ):
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
