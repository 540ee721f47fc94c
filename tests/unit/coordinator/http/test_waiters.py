"""The waiting callers' schedule (pure) and the gateway's admission limit."""

from __future__ import annotations

import fakeredis
import pytest

from cluster.errors import GatewayFull
from coordinator.http.wait_schedule import FIRST_CHECK, WaitSchedule
from coordinator.http.waiters import Waiters


def test_a_waits_checks_come_quickly_then_back_off_to_the_cap() -> None:
    schedule: WaitSchedule[str] = WaitSchedule(cap=1.0)
    schedule.add("caller", now=0.0)
    checks = []
    now = 0.0
    while now < 5.0:
        next_due = schedule.next_due()
        assert next_due is not None
        now = next_due
        assert schedule.due(now) == ["caller"]
        checks.append(round(now, 3))
    assert checks[0] == FIRST_CHECK
    pauses = [round(b - a, 3) for a, b in zip(checks, checks[1:], strict=False)]
    assert pauses[:3] == [0.02, 0.04, 0.08]
    assert max(pauses) == 1.0 and pauses[-1] == 1.0


def test_only_due_waits_are_checked_and_a_removed_one_never_is() -> None:
    schedule: WaitSchedule[int] = WaitSchedule(cap=1.0)
    for i in range(10_000):
        schedule.add(i, now=float(i % 2))  # half start a second later
    schedule.remove(0)
    due = schedule.due(FIRST_CHECK)
    assert len(due) == 4_999 and 0 not in due and all(i % 2 == 0 for i in due)
    assert len(schedule) == 9_999


def test_past_its_limit_the_gateway_says_it_is_full_until_a_caller_leaves() -> None:
    waiters = Waiters(
        client=fakeredis.FakeAsyncRedis(), max_waiting=2, reply_poll=1.0, reply_ttl=60.0
    )
    first = waiters.admit()
    waiters.admit()
    with pytest.raises(GatewayFull, match="gateway is full") as refused:
        waiters.admit()
    assert refused.value.retry_after > 0 and "Redis" not in str(refused.value)
    first.release()
    first.release()  # a second release gives nothing back twice
    assert waiters.waiting == 1
    waiters.admit()
    with pytest.raises(GatewayFull):
        waiters.admit()
