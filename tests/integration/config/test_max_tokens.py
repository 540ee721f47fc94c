"""Issue 17.6: a key the product accepts works: ``model.max_tokens`` reaches the provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.simulator import ProviderSimulator
from cluster.settings import ClusterSettings
from cluster.versions import RedisVersionStore
from coordinator.embedded import EmbeddedCluster
from tests.conftest import SIM_ENDPOINT, sim_config, sim_endpoints

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("endpoint", "field"),
    [(SIM_ENDPOINT, "max_completion_tokens"), (f"{SIM_ENDPOINT}-anthropic", "max_tokens")],
)
def test_the_pushed_max_tokens_is_sent_with_every_model_call(
    endpoint: str, field: str, tmp_path: Path
) -> None:
    with (
        ProviderSimulator() as sim,
        EmbeddedCluster(
            workers=1,
            sandbox_root=tmp_path,
            environ={"OPENAI_API_KEY": "sk-sim-openai", "ANTHROPIC_API_KEY": "sk-sim-anthropic"},
            settings=ClusterSettings(endpoints=sim_endpoints(sim)),
        ) as cluster,
    ):
        assert cluster.coordinator is not None
        store = RedisVersionStore(cluster.coordinator.client, cluster.coordinator.keyspace)
        sent: list[int] = []
        for tokens in (1024, 2048):  # the demo's push: 1024 -> 2048
            sim.clear_recorded_requests()
            store.publish_config(sim_config(endpoint=endpoint, max_tokens=tokens))
            reply = cluster.submit("s1", "hello", timeout=30)
            assert reply.text == "echo: hello"
            sent += [json.loads(r.body)[field] for r in sim.recorded_requests()]
        store.publish_config(sim_config(endpoint=endpoint))  # unset: the agent's default
        sim.clear_recorded_requests()
        cluster.submit("s1", "again", timeout=30)
        sent += [json.loads(r.body)[field] for r in sim.recorded_requests()]
    assert sent == [1024, 2048, 1024]
