"""LeaseKeeper: extends held leases, reports a lost one once, gives up after a TTL without Redis."""

from __future__ import annotations

import fakeredis
import redis

from cluster.keys import Keyspace
from cluster.leases import Lease, RedisLeaseStore
from worker.lease_keeper import LeaseKeeper


class FlakyLeases(RedisLeaseStore):
    """A real lease store whose Redis can be switched off."""

    down = False

    def extend(self, lease: Lease, ttl: float) -> bool:
        if self.down:
            raise redis.ConnectionError("Redis is down")
        return super().extend(lease, ttl)


def setup() -> tuple[FlakyLeases, Lease, list[float], LeaseKeeper]:
    leases = FlakyLeases(fakeredis.FakeRedis(server=fakeredis.FakeServer()), Keyspace("t"))
    lease = leases.acquire("s", "w1", 30)
    assert lease is not None
    now = [0.0]
    return leases, lease, now, LeaseKeeper(leases, ttl=30, clock=lambda: now[0])


def test_a_lease_taken_over_is_reported_lost_exactly_once() -> None:
    leases, lease, _now, keeper = setup()
    lost: list[str] = []
    keeper.hold(lease)
    keeper.on_lost(lease, lambda: lost.append("interrupt"))
    keeper.extend_all()
    assert lost == [] and not keeper.is_lost(lease)
    leases.break_held_by("s", "w1")
    keeper.extend_all()
    keeper.extend_all()
    assert lost == ["interrupt"] and keeper.is_lost(lease)


def test_a_lease_that_could_not_be_extended_for_a_ttl_counts_as_lost() -> None:
    leases, lease, now, keeper = setup()
    lost: list[str] = []
    keeper.hold(lease)
    keeper.on_lost(lease, lambda: lost.append("interrupt"))
    leases.down = True
    now[0] = 29.0
    keeper.extend_all()
    assert lost == [], "within the TTL a Redis hiccup is only logged"
    now[0] = 30.5
    keeper.extend_all()
    assert lost == ["interrupt"], "past the TTL others may own the session: stop the turn"


def test_losing_before_the_turn_registers_its_interrupt_still_interrupts() -> None:
    leases, lease, _now, keeper = setup()
    keeper.hold(lease)
    leases.break_held_by("s", "w1")
    keeper.extend_all()
    called: list[bool] = []
    keeper.on_lost(lease, lambda: called.append(True))
    assert called == [True]


class TurnEndsDuringExtension(RedisLeaseStore):
    """The turn ends (drops and releases its lease) while the keeper extends it."""

    keeper: LeaseKeeper | None = None

    def extend(self, lease: Lease, ttl: float) -> bool:
        assert self.keeper is not None
        self.keeper.drop(lease)
        self.release(lease)
        return super().extend(lease, ttl)


def test_a_turn_that_ended_during_the_extension_is_not_reported_lost() -> None:
    leases = TurnEndsDuringExtension(
        fakeredis.FakeRedis(server=fakeredis.FakeServer()), Keyspace("t")
    )
    lease = leases.acquire("s", "w1", 30)
    assert lease is not None
    keeper = leases.keeper = LeaseKeeper(leases, ttl=30, clock=lambda: 0.0)
    lost: list[str] = []
    keeper.hold(lease)
    keeper.on_lost(lease, lambda: lost.append("interrupt"))
    keeper.extend_all()
    assert lost == [], "a stale callback would interrupt the session's next turn on that agent"


def test_a_failover_interrupts_every_held_turn_once() -> None:
    leases, lease, _now, keeper = setup()
    other = leases.acquire("s2", "w1", 30)
    assert other is not None
    lost: list[str] = []
    keeper.hold(lease)
    keeper.hold(other)
    keeper.on_lost(lease, lambda: lost.append("s"))
    keeper.on_lost(other, lambda: lost.append("s2"))
    keeper.fail_over()
    keeper.fail_over()
    keeper.extend_all()
    assert sorted(lost) == ["s", "s2"]
    assert keeper.is_lost(lease) and keeper.is_lost(other)
