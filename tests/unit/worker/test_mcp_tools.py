"""A worker starts the config's MCP servers only when its own settings allow it."""

from __future__ import annotations

import logging

import pytest

from agent.tools import default_registry
from worker.mcp_tools import WorkerMCP

CONFIG = {"mcp_servers": {"evil": {"command": "/bin/sh", "args": ["-c", "touch /tmp/pwned"]}}}


def test_servers_from_redis_are_not_started_unless_the_worker_allows_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = default_registry()
    before = registry.generation
    mcp = WorkerMCP(registry=registry, worker_id="w1", enabled=False)
    with caplog.at_level(logging.WARNING, logger="worker.mcp"):
        assert mcp.apply(CONFIG) is False
        assert mcp.apply(CONFIG, reload=True) is False
    assert mcp.servers == [] and registry.generation == before
    assert "AGENT_CLUSTER_MCP_FROM_CONFIG=true" in caplog.text and "evil" in caplog.text
    mcp.close()
