r"""Chaos with a Redis failover (issue 20): nothing lost, doubled, run twice at once,
and no write with a pre-failover token, whatever the durability setting.

CI runs one seed per durability setting (``none``, ``replica``): a Sentinel
topology (1 primary, 2 replicas, 3 Sentinels), 3 worker processes reaching it
through the ``redis+sentinel://`` URL (one through a proxy of its own), 24
sessions of traffic, and the three faults: the primary killed with SIGKILL 1-2 s
after its replicas were cut off (so the promoted one really misses acknowledged
writes), SIGSTOP of the primary past the failover (it comes back still a
primary until Sentinel demotes it), and a network cut between a worker and
Redis. The 5-seed table is a command::

    .venv/bin/python -m tests.integration.chaos.run --failover \
        --seeds 1-5 --durability none,replica
"""

from __future__ import annotations

from pathlib import Path

import fakeredis
import pytest

from tests.conftest import redis_server_binary
from tests.integration.chaos import checks
from tests.integration.chaos.failover import FailoverConfig, FailoverRun, run_failover_chaos
from tests.integration.chaos.failover_plan import (
    FAULTS,
    KILL_PRIMARY,
    NETWORK_CUT,
    PAUSE_PRIMARY,
    Fault,
    plan_failovers,
)
from tests.integration.chaos.failover_player import PlayedFault
from tests.integration.chaos.failover_report import evaluate, first_answer_after, format_table
from tests.integration.chaos.traffic import MessageRecord

CI_SEED = 9


@pytest.mark.integration
@pytest.mark.timeout(180)
@pytest.mark.parametrize("durability", ["none", "replica"])
def test_a_failover_loses_nothing_doubles_nothing_and_fences_stale_tokens(
    durability: str, tmp_path: Path
) -> None:
    redis_server_binary()
    result = run_failover_chaos(
        FailoverConfig(
            seed=CI_SEED, durability=durability, workdir=tmp_path,
            faults=(KILL_PRIMARY, PAUSE_PRIMARY, NETWORK_CUT), tail=3.0, settle=40.0,
        )
    )  # fmt: skip
    print(result.report())
    print(format_table([result]))
    assert result.value("failovers") == 2, "the primary was killed, then stopped, and replaced"
    assert result.value("answered") > 50, "the traffic flowed"
    assert not result.failures, "\n".join(result.failures)


# -- the plan alone (pure) ---------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_the_plan_is_seeded_and_plays_each_fault_once(seed: int) -> None:
    plan = plan_failovers(seed)
    assert plan == plan_failovers(seed)
    assert sorted(f.kind for f in plan) == sorted(FAULTS)
    for fault in plan:
        assert 2.0 <= fault.gap <= 4.0
        if fault.kind == KILL_PRIMARY:
            assert 1.0 <= fault.lag <= 2.0, "the replicas lag a second or two before the kill"
        if fault.kind == PAUSE_PRIMARY:
            assert 0.5 <= fault.hold <= 2.0
        if fault.kind == NETWORK_CUT:
            assert fault.cut in ("stall", "drop") and 2.0 <= fault.hold <= 7.0
    assert len({tuple(f.kind for f in plan_failovers(s)) for s in range(20)}) > 1


def test_the_plan_refuses_an_unknown_fault() -> None:
    with pytest.raises(ValueError, match="unknown fault kind.*'flood'"):
        plan_failovers(1, ("kill_primary", "flood"))


# -- the checks (synthetic records, a fakeredis with nothing in it) ------------------------


def _answered(n: int, *, submitted: float, answered: float) -> MessageRecord:
    record = MessageRecord("s000", n, f"s000-m{n:04d}", f"s000 msg {n}", shell=False)
    record.accepted_at = submitted
    record.routed_to.append((submitted, "w1"))
    record.answered_at = answered
    record.replies.append(
        {"ok": True, "message_id": record.message_id, "text": f"echo: {record.text}",
         "turn": n + 1}
    )  # fmt: skip
    return record


def test_the_first_answer_after_a_death_counts_only_messages_sent_after_it() -> None:
    records = [
        _answered(0, submitted=9.0, answered=10.5),  # sent before the death
        _answered(1, submitted=10.2, answered=13.0),
        _answered(2, submitted=11.0, answered=12.5),
    ]
    assert first_answer_after(records, 10.0) == pytest.approx(2.5)
    assert first_answer_after(records, 20.0) is None


def _run(durability: str, records: list[MessageRecord], probe: str) -> FailoverRun:
    played = PlayedFault(Fault(2.0, KILL_PRIMARY, lag=1.0), started=5.0, died=6.0, probe=probe)
    played.failover_seconds = 2.5
    return FailoverRun(
        config=FailoverConfig(seed=1, durability=durability, workdir=Path("/nonexistent")),
        namespace="t", played=[played], records=records, logs={},
    )  # fmt: skip


def test_the_checks_fail_a_stale_write_a_silent_drop_and_with_replica_a_forgotten_commit() -> None:
    silent = _answered(0, submitted=1.0, answered=30.0)
    silent.attempt_timeouts = 1  # its caller heard nothing for attempt_timeout seconds,
    silent.routed_to.append((21.0, "w2"))  # resubmitted it after the death ...
    silent.after_timeout.append("queued")  # ... and its job was gone: lost without a word
    records = [silent]  # answered, but the (empty) history does not have it
    stale = "ACCEPTED: lease extension with stale token 1"
    none_result = evaluate(_run("none", records, stale), fakeredis.FakeRedis())
    replica_result = evaluate(_run("replica", records, "refused"), fakeredis.FakeRedis())

    none_failed = {f.split(":")[0] for f in none_result.failures}
    assert "stale-token writes accepted (probe)" in none_failed
    assert "silently dropped (no reply, no error in 20s, then queued anew)" in none_failed
    assert "answered but missing from history" not in none_failed, "none may forget a commit"
    replica_failed = {f.split(":")[0] for f in replica_result.failures}
    assert "answered but missing from history" in replica_failed
    assert "silently dropped (no reply, no error in 20s, then queued anew)" in replica_failed
    assert "stale-token writes accepted (probe)" not in replica_failed
    assert none_result.stale_accepted == 1 and replica_result.stale_accepted == 0
    table = format_table([none_result, replica_result])
    assert "| 1 | none | 1 | 0 | 0 | 0 | 0 | 1 | 1 | kill 24.0 | 2 |" in table
    assert "| 1 | replica | 1 | 0 | 0 | 0 | 0 | 0 | 1 | kill 24.0 | 2 |" in table


@pytest.mark.parametrize("found", ["pending", "answered"])
def test_a_caller_that_waited_long_for_a_message_still_pending_is_delayed_not_dropped(
    found: str,
) -> None:
    """A turn handed on through a split brain and a network cut can take over 20 s: when the
    resubmission finds its job still pending (or its reply stored), nothing was lost."""
    late = _answered(0, submitted=1.0, answered=30.0)
    late.attempt_timeouts = 1
    late.routed_to.append((21.0, "w2"))
    late.after_timeout.append(found)
    for durability in ("none", "replica"):
        result = evaluate(_run(durability, [late], "refused"), fakeredis.FakeRedis())
        assert result.value("silently dropped (no reply, no error in 20s, then queued anew)") == 0
        assert result.value("waited over 20s, the message still pending (delayed, not lost)") == 1
        assert not any(f.startswith(("silently", "waited")) for f in result.failures)


def test_fences_across_a_failover_order_by_epoch_first() -> None:
    records = [_answered(n, submitted=float(n), answered=n + 0.5) for n in range(3)]

    def reply(n: int, fence: object) -> dict[str, object]:
        committed: dict[str, object] = {"turn": n + 1, "started_at": n, "ended_at": n + 0.5}
        if isinstance(fence, tuple):  # (epoch, token) as the worker writes them
            epoch, committed["fence"] = fence
            if epoch is not None:
                committed["epoch"] = epoch
        else:
            committed["fence"] = fence
        return committed

    def findings(fences: list[object]) -> int:
        data = checks.SessionData(
            user_texts=[r.text for r in records],
            stored={
                r.message_id: reply(n, fence)
                for n, (r, fence) in enumerate(zip(records, fences, strict=True))
            },
            leftover={},
        )
        found = checks.Findings()
        checks.check_session(records, data, found)
        return found.counts["fence not increasing (stale token accepted)"]

    # The promoted replica's counter went back (12 -> 3), but under a newer epoch.
    assert findings([(1, 11), (1, 12), (2, 3)]) == 0
    assert findings([(None, 5), (None, 6), (None, 7)]) == 0
    assert findings([(2, 3), (1, 12), (2, 4)]) == 1, "a grant of the old primary"
    assert findings([(1, 12), (1, 12), (1, 13)]) == 1, "the same token twice"
    assert findings(["1:aaa/11", "1:aaa/12", "2:bbb/3"]) == 0, "a fence written N:replid/token"
