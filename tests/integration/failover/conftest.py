"""Fixtures of the failover tests: a Sentinel-managed replicated Redis on loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import redis_server_binary
from tests.support.sentinel_topology import SentinelTopology, sentinel_topology


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelTopology]:
    """One primary, two replicas and three Sentinels that agree; all stopped afterwards."""
    redis_server_binary()
    with sentinel_topology(tmp_path / "sentinel-topology") as topology:
        yield topology
