"""A worker's schedule loop on fakeredis: a due cron firing becomes one queued turn, once."""

from __future__ import annotations

import fakeredis

from cluster.keys import Keyspace
from cluster.membership import RedisMembership
from cluster.placement import Placement
from cluster.schedules import ScheduleStore, firing_message_id
from cluster.settings import ClusterSettings
from cluster.stores import build_stores
from tests.support.turn_queue import claim
from worker.schedule_loop import ScheduleLoop


def test_a_due_cron_firing_is_queued_once_and_the_schedule_moves_on() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    keys = Keyspace("t")
    RedisMembership(client, keys, heartbeat_ttl=3600).register(
        "w1", host="test", pid=1, queue=keys.worker_queue("w1")
    )
    stores = build_stores(
        ClusterSettings.from_mapping({"namespace": "t", "redis_url": "fakeredis://x"}),
        client=client,
        queue_client=client,
        reply_client=client,
    )
    store = ScheduleStore(client, keys)
    now = store.redis_now_ms()
    missed = now - 5 * 60_000  # five minutes late: one firing, not five
    made = store.create(
        "chat", "digest", first_ms=missed, cron="* * * * *", at_ms=None, now_ms=now, limit=5
    )
    loops = [
        ScheduleLoop(
            store=store,
            queue=stores.queue,
            placement=Placement(
                membership=stores.membership, ownership=stores.ownership, refresh_interval=0
            ),
            recovery=stores.recovery,
            worker_id=worker,
            poll=1.0,
            claim_ttl=30.0,
            reply_ttl=60.0,
            rebalance_idle=0.0,
        )
        for worker in ("w1", "w2")
    ]
    assert [loop.poll_once() for loop in loops] == [1, 0]  # the second finds nothing due

    turn = claim(stores.queue, "w1", block=0)
    assert turn is not None
    assert (turn.job.session_key, turn.job.text) == ("chat", "digest")
    assert turn.job.message_id == firing_message_id(made.schedule_id, missed)
    assert claim(stores.queue, "w1", block=0) is None
    [kept] = store.of_session("chat")
    assert kept.fired == 1 and kept.next_ms is not None and now < kept.next_ms <= now + 60_000
    assert client.zcard(keys.schedules_firing()) == 0
