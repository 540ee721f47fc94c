"""A worker whose Redis connections run out still answers every caller (real Redis).

The worker sizes its pools from its concurrency; when a pool is exhausted
anyway (here: two connections for twelve concurrent slow turns), a turn that
cannot get a connection is deferred and retried, never dropped, and every
caller gets its answer.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.simulator import ProviderSimulator
from cluster.connection import connect
from cluster.keys import Keyspace
from cluster.settings import ClusterSettings
from cluster.versions import RedisVersionStore
from coordinator.ingress import Coordinator
from tests.conftest import RedisServer, sim_config, sim_endpoints
from worker.process import WorkerOptions, WorkerProcess

pytestmark = pytest.mark.integration


def test_an_exhausted_connection_pool_defers_turns_and_every_caller_is_answered(
    redis_server: RedisServer,
    namespace: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with ProviderSimulator(ttft=0.3) as sim:
        settings = ClusterSettings(
            redis_url=redis_server.url, namespace=namespace, endpoints=sim_endpoints(sim)
        )
        RedisVersionStore(
            redis_server.client(), Keyspace(namespace), max_config_bytes=1 << 20
        ).publish_config(sim_config())
        worker = WorkerProcess(
            settings=settings,
            options=WorkerOptions(
                worker_id="small-pool",
                concurrency=12,
                sandbox_root=tmp_path,
                environ={"OPENAI_API_KEY": "sk-test-pool-0123456789"},
            ),
            client=connect(redis_server.url, pool_size=2, pool_wait=0.01),
        )
        worker.start()
        coordinator = Coordinator(settings=settings)
        try:
            with caplog.at_level(logging.WARNING, logger="worker.turns"):
                handles = [coordinator.submit_async(f"s{i}", f"hello {i}") for i in range(12)]
                replies = [handle.result(timeout=60) for handle in handles]
        finally:
            coordinator.close()
            worker.stop(timeout=10)
    assert [reply.text for reply in replies] == [f"echo: hello {i}" for i in range(12)]
    assert "No connection available" in caplog.text, "the pool was never exhausted"
    assert "every connection of the worker's pool was busy: the turn is retried" in caplog.text


def test_a_worker_closes_the_connection_pools_it_opened_when_it_stops(
    redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    observer = redis_server.client()

    def connected() -> int:
        return len(observer.client_list())

    settings = ClusterSettings(redis_url=redis_server.url, namespace=namespace)
    before = connected()
    with WorkerProcess(
        settings=settings,
        options=WorkerOptions(worker_id="closes-pools", concurrency=2, sandbox_root=tmp_path),
    ) as worker:
        assert worker.readiness()[1] != "closes-pools: starting"
        during = connected()
    after = connected()
    observer.close()
    assert during > before, "the worker connected to Redis"
    assert after <= before, f"{after - before} connection(s) of the stopped worker stay open"
