"""Issue 17.3 and 17.5: what a worker shows of the config version, read from outside.

17.3: a push the worker did not hear (made while it was starting, before it
subscribed) was never applied while the worker stayed idle: `status` and the
``config_version`` metric showed the old version until its next turn. The
heartbeat now carries the versions, so an idle worker catches up within a beat.

17.5: after Redis came back empty, workers logged that dead workers' turns had
been handed on (nothing was) and ran config version 0 without a word.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from cluster.health_record import HealthRecord
from cluster.keys import Keyspace
from cluster.versions import RedisVersionStore
from tests.conftest import RedisServer
from tests.integration.config.test_config_cli import cli
from tests.support.fleet import Fleet, fleet

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(redis_server: RedisServer, namespace: str, tmp_path: Path) -> Iterator[Fleet]:
    with fleet(redis_server.url, namespace, tmp_path) as made:
        made.start("w1")
        yield made


def health(client: redis.Redis, namespace: str) -> HealthRecord | None:
    raw = client.hget(Keyspace(namespace).worker_health("w1"), "record")
    return None if raw is None else HealthRecord.from_json(raw)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_an_idle_worker_applies_a_push_it_did_not_hear_within_a_heartbeat(
    worker: Fleet, redis_client: redis.Redis, namespace: str
) -> None:
    keys = Keyspace(namespace)
    store = RedisVersionStore(redis_client, keys)
    store.publish_config({"model": {"max_tokens": 100}})
    wait_for("the announced push is applied", lambda: _version(redis_client, namespace) == 1)
    # Stored but never announced, as for a push made before the worker subscribed.
    redis_client.set(keys.config_doc(), json.dumps({"model": {"max_tokens": 200}}))
    redis_client.incr(keys.config_version())
    started = time.monotonic()
    wait_for(
        "the idle worker applied version 2 (heartbeat interval 0.5 s)",
        lambda: _version(redis_client, namespace) == 2,
        timeout=5.0,
    )
    print(f"unannounced push applied by an idle worker after {time.monotonic() - started:.2f}s")


def _version(client: redis.Redis, namespace: str) -> int:
    record = health(client, namespace)
    return -1 if record is None else record.config_version


def test_a_config_version_that_goes_back_is_said_loudly_until_a_new_push(
    worker: Fleet, redis_client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    store = RedisVersionStore(redis_client, Keyspace(namespace))
    for tokens in (100, 200, 300):
        store.publish_config({"model": {"max_tokens": tokens}})
    wait_for("version 3 applied", lambda: _version(redis_client, namespace) == 3)
    # Redis comes back empty (for this cluster's namespace: the suite's server is shared).
    for pattern in (f"{namespace}:*", f"{{{namespace}}}*", f"rq:*{namespace}*"):
        for key in redis_client.scan_iter(match=pattern, count=1000):
            redis_client.delete(key)

    def lost() -> bool:
        record = health(redis_client, namespace)
        return record is not None and (record.config_version, record.config_version_lost) == (0, 3)

    wait_for("the worker rejoined and reports the lost version", lost)
    log = worker.log("w1")
    assert "the cluster config version went back from 3 to 0: Redis lost its data" in log
    assert "Push the cluster config again" in log
    assert "turns were handed on" not in log, "nothing was handed on"
    status = cli(worker, "status")
    assert status.returncode == 0, status.stderr
    assert "WARNING: Redis lost config v3" in status.stdout and "(lost v3)" in status.stdout
    gateway_view = json.loads(cli(worker, "status", "--json").stdout)
    assert gateway_view["config_version_lost"] == 3
    metrics_free = cli(worker, "health", "w1")
    assert "Redis lost config v3" in metrics_free.stdout + metrics_free.stderr

    store.publish_config({"model": {"max_tokens": 300}})  # the operator pushes again: version 1
    wait_for(
        "the new push ends the warning",
        lambda: (health(redis_client, namespace) or _never()).config_version_lost == 0,
    )
    assert _version(redis_client, namespace) == 1
    assert "config version 1 was published after Redis lost version 3" in worker.log("w1")


def _never() -> HealthRecord:
    raise AssertionError("no health record")
