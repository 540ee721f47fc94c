"""Turns run concurrently inside one worker process, against a slow real-HTTP model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.simulator import ProviderSimulator
from cluster.versions import RedisVersionStore
from coordinator.embedded import EmbeddedCluster

pytestmark = pytest.mark.integration

MODEL_LATENCY = 0.5


def test_one_worker_keeps_32_slow_turns_in_flight_and_serves_the_published_config(
    tmp_path: Path,
) -> None:
    with (
        ProviderSimulator(ttft=MODEL_LATENCY) as sim,
        EmbeddedCluster(
            workers=1,
            concurrency=32,
            sandbox_root=tmp_path,
            environ={"OPENAI_API_KEY": "sk-sim-test"},
        ) as cluster,
    ):
        assert cluster.coordinator is not None
        versions = RedisVersionStore(
            cluster.coordinator.client,
            cluster.coordinator.keyspace,
            max_config_bytes=cluster.settings.max_config_bytes,
        )
        versions.publish_config(
            {"model": {"default": "sim-gpt", "provider": "openai", "base_url": sim.openai_base_url}}
        )
        started = time.monotonic()
        handles = [cluster.submit_async(f"slow-{i}", f"hello {i}") for i in range(32)]
        replies = [h.result(timeout=30) for h in handles]
        elapsed = time.monotonic() - started
    assert [r.text for r in replies] == [f"echo: hello {i}" for i in range(32)]
    assert sim.stats()["total"]["requests"] == 32, "every turn went to the simulator over HTTP"
    # Serially these 32 turns take 32 x 0.5 s = 16 s; concurrently about one model latency.
    assert elapsed < 8 * MODEL_LATENCY, f"32 turns took {elapsed:.1f}s: they did not overlap"
