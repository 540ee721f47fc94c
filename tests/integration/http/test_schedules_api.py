"""Scheduled messages over real HTTP: create, list, fire, cancel, per tenant, with clear 400s.

One gateway process (``agent-cluster serve``) with keys of tenants ``acme``
and ``beta``, two worker processes on a real Redis, and the
``agent-cluster schedules`` command line on the same cluster.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from coordinator.http.auth import key_digest
from tests.conftest import RedisServer
from tests.support.fleet import fleet, user_texts
from tests.support.gateway import Gateway, start_gateway, stop

pytestmark = pytest.mark.integration

ACME = "acme-sched-key-" + "1" * 20
BETA = "beta-sched-key-" + "2" * 20


@dataclass
class ScheduleCluster:
    redis_url: str
    namespace: str
    gateway: Gateway


@pytest.fixture(scope="module")
def cluster(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ScheduleCluster]:
    namespace = f"hs{uuid.uuid4().hex[:10]}"
    tmp = tmp_path_factory.mktemp("schedules")
    env = {"AGENT_CLUSTER_SCHEDULE_POLL": "0.1", "AGENT_CLUSTER_SCHEDULES_PER_SESSION": "3"}
    with fleet(redis_server.url, namespace, tmp, **env) as workers:
        for worker_id in ("s1", "s2"):
            workers.start(worker_id, wait=False)
        for worker_id in ("s1", "s2"):
            workers.wait_live(worker_id)
        gateway = start_gateway(
            redis_server.url,
            namespace,
            tmp,
            "schedules",
            AGENT_CLUSTER_API_KEY_SHA256=f"acme:{key_digest(ACME)},beta:{key_digest(BETA)}",
            AGENT_CLUSTER_SCHEDULES_PER_SESSION="3",
        )
        try:
            yield ScheduleCluster(redis_server.url, namespace, gateway)
        finally:
            stop(gateway.process)
    client = redis.Redis.from_url(redis_server.url)
    for key in client.scan_iter(match=f"{namespace}:*", count=1000):
        client.delete(key)
    client.close()


def _iso(seconds_from_now: float) -> str:
    stamp = datetime.fromtimestamp(time.time() + seconds_from_now, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_scheduled_message_fires_into_the_session_once_and_leaves_the_list(
    cluster: ScheduleCluster, redis_server: RedisServer
) -> None:
    with cluster.gateway.client(key=ACME) as acme:
        made = acme.post("/v1/sessions/plans/schedules", json={"text": "stand-up", "at": _iso(1)})
        assert made.status_code == 201, made.text
        body = made.json()
        assert body["session_key"] == "plans" and body["text"] == "stand-up"
        listed = acme.get("/v1/sessions/plans/schedules").json()["schedules"]
        assert [s["id"] for s in listed] == [body["id"]]
        deadline = time.monotonic() + 20
        while acme.get("/v1/sessions/plans").status_code != 200 or (
            acme.get("/v1/sessions/plans").json()["turns"] < 1
        ):
            assert time.monotonic() < deadline, "the scheduled message never ran"
            time.sleep(0.05)
        assert acme.get("/v1/sessions/plans/schedules").json() == {"schedules": []}
    client = redis.Redis.from_url(redis_server.url)
    assert user_texts(client, cluster.namespace, "@acme/plans") == ["stand-up"]
    client.close()


def test_schedules_are_tenant_scoped_and_cancellable(cluster: ScheduleCluster) -> None:
    with cluster.gateway.client(key=ACME) as acme, cluster.gateway.client(key=BETA) as beta:
        made = acme.post(
            "/v1/sessions/shared-name/schedules", json={"text": "hi", "cron": "0 9 * * 1-5"}
        ).json()
        assert made["cron"] == "0 9 * * 1-5" and made["next"].endswith("T09:00:00Z")
        assert beta.get("/v1/sessions/shared-name/schedules").json() == {"schedules": []}
        refused = beta.delete(f"/v1/sessions/shared-name/schedules/{made['id']}")
        assert refused.status_code == 404, refused.text
        assert [
            s["id"] for s in acme.get("/v1/sessions/shared-name/schedules").json()["schedules"]
        ] == [made["id"]]
        done = acme.delete(f"/v1/sessions/shared-name/schedules/{made['id']}")
        assert done.status_code == 200 and done.json() == {"id": made["id"], "cancelled": True}
        assert acme.get("/v1/sessions/shared-name/schedules").json() == {"schedules": []}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"text": "x", "cron": "*/5 * * *"}, "five fields"),
        ({"text": "x", "cron": "61 * * * *"}, "not a valid cron expression"),
        ({"text": "x", "cron": "0 0 30 2 *"}, "never fires"),
        ({"text": "x", "at": "2020-01-01T00:00:00Z"}, "in the past"),
        ({"text": "x", "at": "tomorrow"}, "ISO 8601"),
        ({"text": "x"}, "exactly one of at"),
        ({"text": "x", "at": "2099-01-01T00:00:00Z", "cron": "* * * * *"}, "exactly one of at"),
        ({"text": "/new", "cron": "* * * * *"}, "cannot be a command"),
        ({"text": "x", "every": "day"}, "unknown field"),
    ],
)
def test_bad_schedules_are_refused_with_what_to_fix(
    cluster: ScheduleCluster, body: dict[str, str], says: str
) -> None:
    with cluster.gateway.client(key=ACME) as acme:
        answer = acme.post("/v1/sessions/bad/schedules", json=body)
        assert answer.status_code == 400, answer.text
        assert says in answer.json()["error"]["message"]
        assert acme.get("/v1/sessions/bad/schedules").json() == {"schedules": []}


def test_a_session_past_its_schedule_limit_is_refused(cluster: ScheduleCluster) -> None:
    with cluster.gateway.client(key=BETA) as beta:
        for i in range(3):
            ok = beta.post(
                "/v1/sessions/busy/schedules", json={"text": f"m{i}", "cron": "0 * * * *"}
            )
            assert ok.status_code == 201, ok.text
        refused = beta.post("/v1/sessions/busy/schedules", json={"text": "m3", "cron": "0 * * * *"})
        assert refused.status_code == 400
        assert "schedules_per_session=3" in refused.json()["error"]["message"]
        assert len(beta.get("/v1/sessions/busy/schedules").json()["schedules"]) == 3


def test_the_command_line_adds_lists_and_cancels(cluster: ScheduleCluster, tmp_path: Path) -> None:
    base = [
        sys.executable,
        "-m",
        "coordinator.cli",
        "schedules",
    ]
    where = ["--redis-url", cluster.redis_url, "--namespace", cluster.namespace]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args, *where], capture_output=True, text=True, timeout=60, cwd=tmp_path
        )

    added = cli("add", "@acme/cli-chat", "weekly digest", "--cron", "0 8 * * 1")
    assert added.returncode == 0, added.stderr
    schedule_id = added.stdout.split()[0]
    listed = cli("list", "@acme/cli-chat")
    assert schedule_id in listed.stdout and "cron '0 8 * * 1'" in listed.stdout
    with cluster.gateway.client(key=ACME) as acme:  # the tenant sees what the operator made
        seen = acme.get("/v1/sessions/cli-chat/schedules").json()["schedules"]
        assert [s["id"] for s in seen] == [schedule_id]
    bad = cli("add", "@acme/cli-chat", "x", "--cron", "every day")
    assert bad.returncode == 2 and "cron" in bad.stderr
    assert cli("cancel", "@acme/cli-chat", schedule_id).returncode == 0
    assert cli("cancel", "@acme/cli-chat", schedule_id).returncode == 1
    assert "has no schedules" in cli("list", "@acme/cli-chat").stdout
