"""The schedule scripts on fakeredis: one claim per firing, cron advance, takeover, limit."""

from __future__ import annotations

import fakeredis
import pytest

from cluster.keys import Keyspace
from cluster.schedules import DueFiring, SchedulesFull, ScheduleStore

KEYS = Keyspace("t")


@pytest.fixture
def store() -> ScheduleStore:
    return ScheduleStore(fakeredis.FakeRedis(server=fakeredis.FakeServer()), KEYS)


def make(store: ScheduleStore, *, cron: str | None = None, limit: int = 5) -> DueFiring:
    now = store.redis_now_ms()
    first = now - 1000  # due already
    made = store.create(
        "chat",
        "ping",
        first_ms=first,
        cron=cron,
        at_ms=None if cron else first,
        now_ms=now,
        limit=limit,
    )
    [due] = [f for f in store.due(now, 10) if f.schedule.schedule_id == made.schedule_id]
    return due


def test_a_due_firing_is_claimed_once_whoever_tries(store: ScheduleStore) -> None:
    due = make(store)
    first = store.claim(due, next_ms=None, worker_id="w1", ttl_ms=30_000)
    second = store.claim(due, next_ms=None, worker_id="w2", ttl_ms=30_000)
    assert (first, second) == ("claimed", "moved")
    assert store.due(store.redis_now_ms(), 10) == []
    assert store.overdue_claims(store.redis_now_ms(), 10) == []  # its deadline is ahead


def test_a_cron_claim_moves_the_schedule_to_its_next_firing(store: ScheduleStore) -> None:
    due = make(store, cron="* * * * *")
    later = store.redis_now_ms() + 60_000
    assert store.claim(due, next_ms=later, worker_id="w1", ttl_ms=30_000) == "claimed"
    [kept] = store.of_session("chat")
    assert (kept.next_ms, kept.fired, kept.last_fire_ms) == (later, 1, due.fire_ms)
    assert store.done(due.schedule.schedule_id, due.fire_ms, "chat")
    assert store.of_session("chat") == [kept]  # a cron schedule stays after a firing


def test_a_one_shot_schedule_is_gone_once_its_firing_is_done(store: ScheduleStore) -> None:
    due = make(store)
    store.claim(due, next_ms=None, worker_id="w1", ttl_ms=30_000)
    assert [s.next_ms for s in store.of_session("chat")] == [None]
    assert store.done(due.schedule.schedule_id, due.fire_ms, "chat")
    assert store.of_session("chat") == []
    assert not store.done(due.schedule.schedule_id, due.fire_ms, "chat")


def test_a_firing_whose_claimer_missed_its_deadline_is_taken_over_once(
    store: ScheduleStore,
) -> None:
    due = make(store)
    sid = due.schedule.schedule_id
    store.claim(due, next_ms=None, worker_id="dead", ttl_ms=0)  # deadline: now
    overdue = store.overdue_claims(store.redis_now_ms(), 10)
    assert overdue == [(sid, due.fire_ms)]
    assert store.reclaim(sid, due.fire_ms, worker_id="w2", ttl_ms=30_000)
    assert not store.reclaim(sid, due.fire_ms, worker_id="w3", ttl_ms=30_000)
    assert store.load(sid) is not None and store.load(sid).fired == 1  # type: ignore[union-attr]


def test_cancel_touches_only_the_sessions_own_schedule(store: ScheduleStore) -> None:
    due = make(store)
    sid = due.schedule.schedule_id
    assert not store.cancel("other-chat", sid)
    assert store.cancel("chat", sid)
    assert store.of_session("chat") == [] and store.due(store.redis_now_ms(), 10) == []
    assert store.claim(due, next_ms=None, worker_id="w1", ttl_ms=1000) == "moved"


def test_a_session_at_its_limit_gets_no_more_schedules(store: ScheduleStore) -> None:
    for _ in range(2):
        make(store, cron="* * * * *", limit=2)
    with pytest.raises(SchedulesFull, match="schedules_per_session=2"):
        make(store, cron="* * * * *", limit=2)
    assert len(store.of_session("chat")) == 2


def test_a_look_finds_work_only_when_a_firing_is_due_or_a_claim_overdue(
    store: ScheduleStore,
) -> None:
    now = store.redis_now_ms()
    assert store.look()[1] is False  # nothing scheduled
    store.create(
        "chat", "later", first_ms=now + 60_000, cron=None, at_ms=now + 60_000, now_ms=now, limit=5
    )
    assert store.look()[1] is False  # scheduled, not due
    due = make(store)
    assert store.look()[1] is True
    store.claim(due, next_ms=None, worker_id="w1", ttl_ms=60_000)
    assert store.look()[1] is False  # claimed, its deadline ahead
