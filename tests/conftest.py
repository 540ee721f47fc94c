"""Fixtures shared by the whole suite.

Integration tests get their own ``redis-server`` on a free loopback port (never
the machine's 6379) and every test its own key namespace, removed afterwards.
A missing ``redis-server`` skips integration tests on a laptop but fails them
in CI (``CI=true``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from agent.simulator import ProviderSimulator
from cluster.endpoints import Endpoint


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RedisServer:
    """A redis-server process started by the test suite."""

    host: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port)


def redis_server_binary() -> str:
    """The path of ``redis-server``: a missing one skips the test, or fails it in CI."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "redis-server is not installed; .ci/run must install it (apt-get install "
                "redis-server)"
            )
        pytest.skip("redis-server is not installed (integration tests need it)")
    return binary


def start_redis_server(tmp_dir: Path, *extra_args: str) -> RedisServer:
    """Start a throwaway redis-server on a free port and wait until it answers PING."""
    binary = redis_server_binary()
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_dir),
            "--notify-keyspace-events",
            "Ex",
            *extra_args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    while True:
        try:
            if client.ping():
                break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"redis-server on port {port} did not start")
            time.sleep(0.02)
    client.close()
    return RedisServer(host="127.0.0.1", port=port, process=proc)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole session; tests isolate by namespace."""
    server = start_redis_server(tmp_path_factory.mktemp("redis"))
    yield server
    server.process.terminate()
    server.process.wait(timeout=10)


@pytest.fixture
def namespace() -> str:
    """A key namespace unique to this test."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_client(redis_server: RedisServer, namespace: str) -> Iterator[redis.Redis]:
    """A client of the suite's redis-server; the test's namespace is deleted afterwards."""
    client = redis_server.client()
    yield client
    for key in client.scan_iter(match=f"{namespace}:*", count=1000):
        client.delete(key)
    for key in client.scan_iter(match=f"{{{namespace}}}*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture(scope="session", autouse=True)
def sandbox_backend_for_tests() -> Iterator[None]:
    """Tools run in the bwrap sandbox wherever it works, and always in CI.

    On a laptop where bwrap cannot run, tests that merely use tools fall back
    to the local backend (``auto``), while the sandbox's own tests skip with
    the reason (``tests/sandbox_support.require_bwrap``); in CI they fail.
    """
    from agent.tools.sandbox import bwrap_problem
    from agent.tools.sandbox_config import BACKEND_ENV_VAR, SandboxConfig

    if os.environ.get("CI") == "true" or os.environ.get(BACKEND_ENV_VAR):
        yield
        return
    if bwrap_problem(SandboxConfig()) is None:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(BACKEND_ENV_VAR, "auto")
        yield


@pytest.fixture(scope="session", autouse=True)
def no_workspace_volume_outlives_the_tests(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """Unmount the workspace volumes (root only) that tests and their workers left mounted.

    A worker keeps a session's volume mounted between turns, as it keeps its
    directory; workers a test kills, and environments a test never tears down,
    leave theirs behind.
    """
    yield
    from agent.tools.workspace_volume import mounted_volumes, unmount_volume

    for workspace in mounted_volumes(tmp_path_factory.getbasetemp()):
        unmount_volume(workspace)


SIM_ENDPOINT = "sim"
"""The endpoint name the tests' workers declare for the provider simulator (OpenAI wire)."""


def sim_endpoints(sim: ProviderSimulator) -> tuple[Endpoint, ...]:
    """A worker's declared endpoints for ``sim``: ``sim`` (OpenAI) and ``sim-anthropic``,
    both sending the key in ``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY`` like a real provider."""
    return (
        Endpoint(SIM_ENDPOINT, "openai", sim.openai_base_url, "OPENAI_API_KEY"),
        Endpoint(
            f"{SIM_ENDPOINT}-anthropic", "anthropic", sim.anthropic_base_url, "ANTHROPIC_API_KEY"
        ),
    )


def sim_endpoints_env(sim: ProviderSimulator, *extra: Endpoint) -> dict[str, str]:
    """The same (and ``extra``), as the ``AGENT_CLUSTER_ENDPOINTS`` variable of a worker process."""
    declared = {
        e.name: {"provider": e.provider, "base_url": e.base_url, "api_key_env": e.api_key_env}
        for e in (*sim_endpoints(sim), *extra)
    }
    return {"AGENT_CLUSTER_ENDPOINTS": json.dumps(declared)}


def sim_config(**model: object) -> dict[str, object]:
    """A cluster config whose agents talk to the tests' simulator endpoint (model sim-gpt)."""
    return {"model": {"default": "sim-gpt", "endpoint": SIM_ENDPOINT, **model}}
