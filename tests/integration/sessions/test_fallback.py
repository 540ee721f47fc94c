"""A turn the primary model cannot serve runs on the fallback; the next tries the primary again."""

from __future__ import annotations

import json

import pytest
import redis

from agent.simulator import ProviderSimulator
from cluster.keys import Keyspace
from cluster.versions import RedisVersionStore
from tests.conftest import sim_config, sim_endpoints_env
from tests.support.fleet import Fleet, coordinator

pytestmark = pytest.mark.integration


def test_a_fallback_turn_evicts_the_agent_so_the_next_turn_retries_the_primary(
    workers: Fleet, redis_client: redis.Redis, namespace: str
) -> None:
    with ProviderSimulator() as sim:
        workers.env.update(sim_endpoints_env(sim))
        RedisVersionStore(
            redis_client, Keyspace(namespace), max_config_bytes=1 << 20
        ).publish_config(
            sim_config(
                default="sim-primary", fallback={"default": "sim-fallback", "endpoint": "sim"}
            )
        )
        workers.start("w0")
        with coordinator(workers.settings()) as coord:
            assert coord.submit("fb", "hello", timeout=30).raw["fallback"] is False
            sim.inject_faults("500", "500", "500", "500")  # the primary's every retry fails
            rescued = coord.submit("fb", "are you there?", timeout=60)
            sim.clear_recorded_requests()
            later = coord.submit("fb", "and now?", timeout=30)
        models = [json.loads(r.body)["model"] for r in sim.recorded_requests()]
    assert rescued.raw["fallback"] is True and rescued.text == "echo: are you there?"
    assert later.raw["fallback"] is False and not later.cache_hit, "a fresh agent was built"
    assert models == ["sim-primary"], "the next turn went to the primary again"
