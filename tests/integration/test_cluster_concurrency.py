"""Turns run concurrently inside one worker process, against a slow real-HTTP model."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.simulator import ProviderSimulator
from cluster.settings import ClusterSettings
from cluster.versions import RedisVersionStore
from coordinator.embedded import EmbeddedCluster
from tests.conftest import sim_config, sim_endpoints

pytestmark = pytest.mark.integration

# Long enough that starting 32 turns on a loaded 2-core machine (CI shares it)
# takes a small part of one turn: the overlap shows concurrency, not speed.
MODEL_LATENCY = 2.0


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
            settings=ClusterSettings(endpoints=sim_endpoints(sim)),
        ) as cluster,
    ):
        assert cluster.coordinator is not None
        versions = RedisVersionStore(
            cluster.coordinator.client,
            cluster.coordinator.keyspace,
            max_config_bytes=cluster.settings.max_config_bytes,
        )
        versions.publish_config(sim_config())
        handles = [cluster.submit_async(f"slow-{i}", f"hello {i}") for i in range(32)]
        replies = [h.result(timeout=60) for h in handles]
    assert [r.text for r in replies] == [f"echo: hello {i}" for i in range(32)]
    assert sim.stats()["total"]["requests"] == 32, "every turn went to the simulator over HTTP"
    # Each turn records when it ran: at one instant, (nearly) all 32 were in flight.
    edges = sorted(
        [(r.raw["started_at"], 1) for r in replies] + [(r.raw["ended_at"], -1) for r in replies]
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak >= 24, f"at most {peak} of 32 slow turns ran at once: they did not overlap"
