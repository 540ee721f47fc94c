"""When a pending ``notify_on_complete`` notification is announced, and how (fakeredis)."""

from __future__ import annotations

import fakeredis
import pytest
import redis

from agent.tools.background import ProcessStatus
from cluster.folds import FoldStore
from cluster.settings import ClusterSettings
from cluster.stores import ClusterStores, build_stores
from worker.background_notices import BackgroundNotices, notice_due


@pytest.mark.parametrize(
    ("status", "due"),
    [
        (ProcessStatus("running"), "wait"),
        (ProcessStatus("exited", exit_code=0), "ended"),
        (ProcessStatus("killed"), "ended"),
        (ProcessStatus("lost", detail="no process"), "ended"),
    ],
)
def test_the_watching_worker_announces_once_its_process_is_not_running(
    status: ProcessStatus, due: str
) -> None:
    assert notice_due(watcher="w1", me="w1", watcher_alive=True, status=status) == due


def test_another_workers_process_is_left_to_it_while_it_beats() -> None:
    assert notice_due(watcher="w1", me="w2", watcher_alive=True, status=None) == "wait"


def test_a_process_whose_watcher_stopped_beating_is_reported_lost() -> None:
    assert notice_due(watcher="w1", me="w2", watcher_alive=False, status=None) == "lost"


@pytest.fixture
def cluster() -> tuple[redis.Redis, ClusterStores]:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    settings = ClusterSettings(namespace="bgn")
    stores = build_stores(settings, client=client, queue_client=client, reply_client=client)
    stores.membership.register("w2", host="h", pid=1, queue=stores.keyspace.worker_queue("w2"))
    return client, stores


def _notices(client: redis.Redis, stores: ClusterStores, me: str) -> BackgroundNotices:
    return BackgroundNotices(
        client=client,
        keyspace=stores.keyspace,
        worker_id=me,
        queue=stores.queue,
        placement=stores.placement,
        membership=stores.membership,
        reply_ttl=60,
        interval=1,
        clock=lambda: 1_700_000_000.0,
    )


def _record(proc_id: str = "p1") -> dict[str, object]:
    return {"id": proc_id, "command": "make test", "started_at": 1_700_000_000.5, "pid": 1}


def _queued_texts(client: redis.Redis, stores: ClusterStores, session: str) -> list[str]:
    pending = client.zrange(stores.keyspace.session(session).pending, 0, -1)
    return [FoldStore(client, stores.keyspace).jobs([p.decode()])[0].text for p in pending]


def test_a_dead_workers_process_is_announced_lost_once_through_the_queue(
    cluster: tuple[redis.Redis, ClusterStores],
) -> None:
    client, stores = cluster
    _notices(client, stores, "gone").watch("chat", _record(), {"user_id": "u1"})
    sweeper = _notices(client, stores, "w2")
    assert sweeper.check() == 1
    [text] = _queued_texts(client, stores, "chat")
    assert text.startswith("[background process p1 lost with its host: worker gone")
    assert client.hlen(stores.keyspace.notifications()) == 0
    _notices(client, stores, "gone").watch("chat", _record(), {"user_id": "u1"})  # a 2nd sweeper
    assert sweeper.check() == 1 and len(_queued_texts(client, stores, "chat")) == 1, "runs once"


def test_a_reset_forgets_only_its_sessions_notifications(
    cluster: tuple[redis.Redis, ClusterStores],
) -> None:
    client, stores = cluster
    notices = _notices(client, stores, "w2")
    notices.watch("chat", _record("p1"), {})
    notices.watch("chat", _record("p2"), {})
    notices.watch("chat-2", _record("p1"), {})
    assert notices.forget("chat") == 2
    assert client.hlen(stores.keyspace.notifications()) == 1
