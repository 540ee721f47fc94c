"""Fixtures of the status tests: worker processes of one namespace and a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from agent.simulator import ProviderSimulator
from cluster.keys import Keyspace
from cluster.versions import RedisVersionStore
from tests.conftest import RedisServer, sim_config, sim_endpoints_env
from tests.support.fleet import FAST, Fleet, fleet

# Long enough for a CLI call to see a turn running and another waiting behind it.
MODEL_LATENCY = 6.0


@pytest.fixture
def workers(redis_server: RedisServer, namespace: str, tmp_path: Path) -> Iterator[Fleet]:
    with fleet(redis_server.url, namespace, tmp_path) as made:
        yield made


@dataclass(frozen=True)
class Cli:
    """Runs ``agent-cluster`` as a subprocess against the test's Redis and namespace."""

    redis_url: str
    namespace: str

    def run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "coordinator.cli",
                *args,
                "--redis-url",
                self.redis_url,
                "--namespace",
                self.namespace,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **FAST},
        )

    def json(self, *args: str) -> Any:
        done = self.run(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def cli(redis_server: RedisServer, namespace: str) -> Cli:
    return Cli(redis_server.url, namespace)


@pytest.fixture
def slow_model(
    redis_client: redis.Redis, namespace: str, workers: Fleet
) -> Iterator[ProviderSimulator]:
    """Every turn of the namespace takes MODEL_LATENCY seconds (so a running turn can be seen);
    the workers declare the simulator as endpoint ``sim``."""
    with ProviderSimulator(ttft=MODEL_LATENCY) as sim:
        workers.env.update(sim_endpoints_env(sim))
        RedisVersionStore(redis_client, Keyspace(namespace)).publish_config(sim_config())
        yield sim
