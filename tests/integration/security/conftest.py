"""A real worker process under attack: a fake api key in its environment, a
password-protected redis-server, the Redis URL in a file (not in argv), and
the default ``bwrap`` tool sandbox. Tests drive ``!sh`` messages through the
coordinator as a hostile chat user would (the offline model turns ``!sh CMD``
into a terminal call and ``!tool NAME {json}`` into any tool call).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from cluster.settings import ClusterSettings
from coordinator.ingress import Coordinator, Reply
from tests.conftest import RedisServer, start_redis_server
from tests.sandbox_support import require_bwrap

FAKE_KEY = "sk-fake-" + "7Qm2xR9vL4kT8nW3pZ6y"
REDIS_PASSWORD = "pw-" + uuid.uuid4().hex


@dataclass
class Target:
    """The worker under attack and the ways to talk to it."""

    redis: RedisServer
    url: str
    namespace: str
    home: Path
    worker: subprocess.Popen[bytes]
    coordinator: Coordinator
    client: redis.Redis

    def send(self, session: str, text: str, timeout: float = 90.0) -> Reply:
        """Submit one message and return the reply (the tool result is quoted in it)."""
        return self.coordinator.submit(session, text, timeout=timeout)

    def sh(self, session: str, command: str) -> str:
        """Run ``command`` through ``!sh`` and return the reply text."""
        return self.send(session, f"!sh {command}").text

    def terminal(self, session: str, command: str, timeout: float) -> str:
        """Run ``command`` with an explicit terminal timeout."""
        args = json.dumps({"command": command, "timeout": timeout})
        return self.send(session, f"!tool terminal {args}").text

    def tool(self, session: str, name: str, **args: object) -> str:
        return self.send(session, f"!tool {name} {json.dumps(args)}").text

    def worker_alive(self) -> bool:
        return self.worker.poll() is None

    def stored_values(self) -> list[bytes]:
        """Every value the cluster keeps in Redis (strings, hashes, lists, sets, zsets)."""
        values: list[bytes] = []
        for key in self.client.scan_iter(count=1000):
            kind = self.client.type(key)
            if kind == b"string":
                values.append(self.client.get(key) or b"")
            elif kind == b"hash":
                values += list(self.client.hgetall(key).values())
            elif kind == b"list":
                values += self.client.lrange(key, 0, -1)
            elif kind == b"set":
                values += list(self.client.smembers(key))
            elif kind == b"zset":
                values += [m for m, _ in self.client.zrange(key, 0, -1, withscores=True)]
        return values


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    require_bwrap()
    tmp = tmp_path_factory.mktemp("attack")
    server = start_redis_server(tmp)
    # Password-protect it once it is up (the fixture's readiness probe does not AUTH).
    with server.client() as admin:
        admin.config_set("requirepass", REDIS_PASSWORD)
    url = f"redis://:{REDIS_PASSWORD}@{server.host}:{server.port}/0"
    url_file = tmp / "redis-url"
    url_file.write_text(url + "\n")
    url_file.chmod(0o600)
    namespace = f"atk{uuid.uuid4().hex[:6]}"
    home = tmp / "home"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AGENT_CLUSTER_") and key != "OPENAI_API_KEY"
    }
    env.update(
        {
            "OPENAI_API_KEY": FAKE_KEY,
            "AGENT_CLUSTER_HOME": str(home),
            "AGENT_CLUSTER_SANDBOX_FILE_MB": "64",
            "AGENT_CLUSTER_SANDBOX_WORKSPACE_MB": "128",
        }
    )
    log = (tmp / "worker.log").open("wb")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coordinator.cli",
            "worker",
            "--redis-url-file",
            str(url_file),
            "--namespace",
            namespace,
            "--id",
            "w-target",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    client = redis.Redis(host=server.host, port=server.port, password=REDIS_PASSWORD)
    coordinator = Coordinator(settings=ClusterSettings(redis_url=url, namespace=namespace))
    deadline = time.monotonic() + 30
    while not coordinator.membership.active_workers():
        assert worker.poll() is None, (tmp / "worker.log").read_text()
        assert time.monotonic() < deadline, "the worker did not register"
        time.sleep(0.05)
    yield Target(server, url, namespace, home, worker, coordinator, client)
    coordinator.close()
    if worker.poll() is None:
        worker.terminate()
        worker.wait(timeout=60)
    log.close()
    client.close()
    server.process.terminate()
    server.process.wait(timeout=10)
