"""The steady-state path end to end: coordinator -> rq -> worker processes -> reply.

Runs once against a private redis-server with three real worker processes and
once on the embedded fakeredis mode, with the same checks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from cluster.errors import InvalidMessage, NoLiveWorkers, PayloadTooLarge
from cluster.keys import Keyspace
from cluster.ownership import RedisOwnershipStore
from cluster.settings import ClusterSettings
from coordinator.embedded import EmbeddedCluster
from coordinator.ingress import Coordinator, TurnHandle
from tests.conftest import RedisServer

pytestmark = pytest.mark.integration

SECRET_KEY = "sk-live-THIS-MUST-NEVER-REACH-REDIS-7f3a9c"
SESSIONS, TURNS = 50, 5


def run_conversations(
    submit_async: Callable[..., TurnHandle], owner_of: Callable[[str], str]
) -> None:
    """Submit every turn of every session at once (in order per session) and check the replies."""
    handles = {
        f"user-{s}": [submit_async(f"user-{s}", f"user-{s} says {t}") for t in range(TURNS)]
        for s in range(SESSIONS)
    }
    hits = later_turns = 0
    for session, session_handles in handles.items():
        replies = [h.result(timeout=60) for h in session_handles]
        owner = owner_of(session)
        for t, reply in enumerate(replies):
            assert reply.text == f"echo: {session} says {t}"
            assert reply.raw["turn"] == t + 1, "turns of a session ran in arrival order"
            assert reply.worker_id == owner, "every turn ran on the session's owner"
            if t > 0:
                later_turns += 1
                hits += reply.cache_hit
    assert hits / later_turns >= 0.99, f"agent reuse after the first turn: {hits}/{later_turns}"


def scan_values(client: redis.Redis, patterns: list[str]) -> Iterator[tuple[bytes, bytes]]:
    for pattern in patterns:
        for key in client.scan_iter(match=pattern, count=1000):
            kind = client.type(key)
            if kind == b"string":
                values = [client.get(key) or b""]
            elif kind == b"hash":
                values = list(client.hgetall(key).values())
            elif kind == b"list":
                values = client.lrange(key, 0, -1)
            elif kind == b"set":
                values = list(client.smembers(key))
            elif kind == b"zset":
                values = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
            else:
                values = []
            for value in values:
                yield key, value


def assert_nothing_unsafe_stored(client: redis.Redis, namespace: str) -> None:
    seen = 0
    for key, value in scan_values(client, [f"{namespace}:*", f"rq:job:{namespace}-*"]):
        seen += 1
        assert not value.startswith(b"\x80"), f"pickle payload in {key!r}"
        assert SECRET_KEY.encode() not in value, f"api key stored in {key!r}"
    assert seen > SESSIONS, "the scan looked at the cluster's data"


@pytest.fixture
def workers(
    redis_server: RedisServer, namespace: str, tmp_path: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = {**os.environ, "OPENAI_API_KEY": SECRET_KEY, "AGENT_CLUSTER_HOME": str(tmp_path)}
    logs = [(tmp_path / f"w{i}.log").open("wb") for i in range(3)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "coordinator.cli",
                "worker",
                "--redis-url",
                redis_server.url,
                "--namespace",
                namespace,
                "--id",
                f"w{i}",
                "--concurrency",
                "16",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=logs[i],
        )
        for i in range(3)
    ]
    yield procs
    for proc in procs:
        proc.terminate()
    codes = [proc.wait(timeout=30) for proc in procs]
    for log in logs:
        log.close()
    assert codes == [0, 0, 0], "SIGTERM drains every worker and it exits 0"


def wait_for_workers(coordinator: Coordinator, count: int) -> None:
    deadline = time.monotonic() + 20
    while len(coordinator.membership.active_workers()) < count:
        assert time.monotonic() < deadline, "workers did not register"
        time.sleep(0.05)


def test_three_worker_processes_on_real_redis(
    redis_server: RedisServer,
    namespace: str,
    redis_client: redis.Redis,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    settings = ClusterSettings(redis_url=redis_server.url, namespace=namespace)
    coordinator = Coordinator(settings=settings)
    try:
        wait_for_workers(coordinator, 3)
        owners = RedisOwnershipStore(redis_client, Keyspace(namespace))

        def owner_of(session: str) -> str:
            record = owners.owner_of(session)
            assert record is not None
            return record.worker_id

        run_conversations(coordinator.submit_async, owner_of)
        assert {owner_of(f"user-{s}") for s in range(SESSIONS)} == {"w0", "w1", "w2"}
        assert_nothing_unsafe_stored(redis_client, namespace)
    finally:
        coordinator.close()


def test_embedded_mode_runs_the_same_conversations(tmp_path: Path) -> None:
    with EmbeddedCluster(workers=3, sandbox_root=tmp_path) as cluster:
        assert cluster.coordinator is not None
        owners = RedisOwnershipStore(cluster.coordinator.client, cluster.coordinator.keyspace)

        def owner_of(session: str) -> str:
            record = owners.owner_of(session)
            assert record is not None
            return record.worker_id

        run_conversations(cluster.submit_async, owner_of)
        assert_nothing_unsafe_stored(cluster.coordinator.client, cluster.settings.namespace)


def test_bad_messages_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    with EmbeddedCluster(workers=1, sandbox_root=tmp_path) as cluster:
        with pytest.raises(InvalidMessage, match="session_key must not be empty"):
            cluster.submit("", "hi")
        with pytest.raises(InvalidMessage, match="text must be a string, got int"):
            cluster.submit("s", 42)  # type: ignore[arg-type]
        with pytest.raises(PayloadTooLarge, match="max_message_bytes"):
            cluster.submit("s", "x" * (cluster.settings.max_message_bytes + 1))
        with pytest.raises(InvalidMessage, match="unknown message attributes"):
            cluster.submit("s", "hi", colour="red")
        assert cluster.submit("s", "still works").text == "echo: still works"


def test_no_live_worker_refuses_instead_of_accepting(
    redis_server: RedisServer, namespace: str
) -> None:
    coordinator = Coordinator(
        settings=ClusterSettings(redis_url=redis_server.url, namespace=namespace)
    )
    try:
        with pytest.raises(NoLiveWorkers, match="start one"):
            coordinator.submit("lonely", "anyone there?")
    finally:
        coordinator.close()


def test_a_message_delivered_twice_is_answered_once(tmp_path: Path) -> None:
    with EmbeddedCluster(workers=2, sandbox_root=tmp_path) as cluster:
        first = cluster.submit("dup", "only once", message_id="m-1")
        again = cluster.submit("dup", "only once", message_id="m-1")
        following = cluster.submit("dup", "next")
    assert again.text == first.text and again.raw["turn"] == first.raw["turn"] == 1
    assert following.raw["turn"] == 2, "the duplicate did not add a turn"
