"""Fixtures shared by the fault, session and workspace tests: a fleet of worker
processes (``workers``) and a slow provider simulator (``slow_model``).

A test directory uses them by importing them into its ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from agent.simulator import ProviderSimulator
from cluster.keys import Keyspace
from cluster.versions import RedisVersionStore
from tests.conftest import RedisServer, sim_config, sim_endpoints_env
from tests.support.fleet import Fleet, fleet

MODEL_LATENCY = 1.0


@pytest.fixture
def workers(redis_server: RedisServer, namespace: str, tmp_path: Path) -> Iterator[Fleet]:
    with fleet(redis_server.url, namespace, tmp_path) as made:
        yield made


@pytest.fixture
def slow_model(
    redis_client: redis.Redis, namespace: str, workers: Fleet
) -> Iterator[ProviderSimulator]:
    """Every turn of the namespace takes about MODEL_LATENCY seconds (published config);
    the fleet's workers declare the simulator as endpoint ``sim``."""
    with ProviderSimulator(ttft=MODEL_LATENCY) as sim:
        workers.env.update(sim_endpoints_env(sim))
        RedisVersionStore(
            redis_client, Keyspace(namespace), max_config_bytes=1 << 20
        ).publish_config(sim_config())
        yield sim
