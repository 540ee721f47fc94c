"""The command line run as a user runs it: one line and the documented exit status."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import redis

from cluster.keys import Keyspace
from cluster.versions import RedisVersionStore
from tests.conftest import RedisServer

pytestmark = pytest.mark.integration


def run(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coordinator.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "AGENT_CLUSTER_API_KEY_SHA256": "0" * 64},
    )


def test_serve_on_a_taken_port_says_so_in_one_line_and_exits_4(redis_server: RedisServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run("serve", "--port", str(port), "--redis-url", redis_server.url)
    assert done.returncode == 4, done.stderr
    assert done.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use); stop what uses it "
        "or choose another --port"
    ]


def test_an_unknown_session_exits_1_like_the_http_404(
    redis_server: RedisServer, namespace: str
) -> None:
    done = run("session", "never-seen", "--redis-url", redis_server.url, "--namespace", namespace)
    assert done.returncode == 1, done.stderr
    assert (
        done.stdout.strip() == "session never-seen: nothing stored (never seen, or reset and idle)"
    )
    as_json = run(
        "session", "never-seen", "--json", "--redis-url", redis_server.url, "--namespace", namespace
    )
    assert as_json.returncode == 1 and '"exists": false' in as_json.stdout


def test_an_abbreviated_flag_does_not_join_another_namespace(redis_server: RedisServer) -> None:
    done = run("worker", "--name", "w1", "--redis-url", redis_server.url, timeout=30)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: agent-cluster worker")
    assert done.stderr.rstrip().endswith("error: unrecognized arguments: --name w1")


def test_registry_bump_mentions_mcp_only_when_the_config_has_servers(
    redis_server: RedisServer, namespace: str, redis_client: redis.Redis
) -> None:
    where = ("--redis-url", redis_server.url, "--namespace", namespace)
    plain = run("registry", "bump", *where)
    assert plain.returncode == 0, plain.stderr
    assert "re-discovered" not in plain.stdout
    assert (
        "generation 1 applied by 0/0 live worker(s) (the config has no mcp_servers" in plain.stdout
    )
    RedisVersionStore(redis_client, Keyspace(namespace)).publish_config(
        {"mcp_servers": {"files": {"command": "mcp-files"}}}
    )
    with_servers = run("registry", "bump", *where)
    assert with_servers.returncode == 0, with_servers.stderr
    assert "MCP tools re-discovered on 0/0 live worker(s)" in with_servers.stdout


def test_chat_prints_a_tool_call_once_and_its_output_once() -> None:
    done = run("chat", "-m", "!sh echo $((6 * 7))", timeout=90)
    assert done.returncode == 0, done.stderr
    assert '[terminal {"command": "echo $((6 * 7))"}]' in done.stdout
    assert done.stdout.count("42") == 1, done.stdout
