"""SessionScheduler: per-session FIFO, one running item per session, a global cap (no threads)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.errors import AgentClusterError
from worker.scheduling import SessionScheduler


def _drain(scheduler: SessionScheduler[str]) -> list[tuple[str, str]]:
    started = []
    while (ready := scheduler.next_ready()) is not None:
        started.append(ready)
    return started


def test_turns_of_one_session_start_in_order_one_at_a_time() -> None:
    scheduler: SessionScheduler[str] = SessionScheduler(8)
    for item in ("a1", "a2", "a3"):
        scheduler.add("a", item)
    assert _drain(scheduler) == [("a", "a1")]
    assert scheduler.running == 1 and scheduler.waiting == 2
    scheduler.finish("a")
    assert _drain(scheduler) == [("a", "a2")]
    scheduler.finish("a")
    assert _drain(scheduler) == [("a", "a3")]
    scheduler.finish("a")
    assert scheduler.idle and scheduler.next_ready() is None


def test_a_session_with_queued_turns_does_not_block_others() -> None:
    scheduler: SessionScheduler[str] = SessionScheduler(4)
    for item in ("a1", "a2", "a3", "a4"):
        scheduler.add("a", item)
    scheduler.add("b", "b1")
    scheduler.add("c", "c1")
    assert _drain(scheduler) == [("a", "a1"), ("b", "b1"), ("c", "c1")]
    scheduler.add("d", "d1")  # arrives while a's backlog waits: starts at once
    assert _drain(scheduler) == [("d", "d1")]


def test_concurrency_caps_running_items_and_frees_in_ready_order() -> None:
    scheduler: SessionScheduler[str] = SessionScheduler(2)
    for session in ("a", "b", "c", "d"):
        scheduler.add(session, session + "1")
    assert _drain(scheduler) == [("a", "a1"), ("b", "b1")]
    assert scheduler.capacity == 0
    scheduler.finish("b")
    assert _drain(scheduler) == [("c", "c1")]
    scheduler.finish("a")
    assert _drain(scheduler) == [("d", "d1")]


def test_a_finished_session_with_backlog_queues_behind_already_ready_sessions() -> None:
    scheduler: SessionScheduler[str] = SessionScheduler(1)
    scheduler.add("a", "a1")
    scheduler.add("a", "a2")
    scheduler.add("b", "b1")
    assert _drain(scheduler) == [("a", "a1")]
    scheduler.finish("a")
    assert _drain(scheduler) == [("b", "b1")]  # b waited longer than a's second turn
    scheduler.finish("b")
    assert _drain(scheduler) == [("a", "a2")]


def test_capacity_counts_turns_waiting_behind_their_session() -> None:
    scheduler: SessionScheduler[str] = SessionScheduler(4)
    for item in ("a1", "a2", "a3"):
        scheduler.add("a", item)
    _drain(scheduler)
    assert (scheduler.running, scheduler.waiting, scheduler.capacity) == (1, 2, 1)
    scheduler.add("b", "b1")
    scheduler.add("b", "b2")
    assert scheduler.capacity == 0  # never negative


def test_finish_without_a_running_item_is_an_error() -> None:
    scheduler: SessionScheduler[str] = SessionScheduler(1)
    with pytest.raises(AgentClusterError, match="no running item"):
        scheduler.finish("a")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "4"])
def test_concurrency_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(AgentClusterError, match="concurrency"):
        SessionScheduler(bad)  # type: ignore[arg-type]


def test_drop_waiting_returns_what_never_started() -> None:
    scheduler: SessionScheduler[str] = SessionScheduler(1)
    scheduler.add("a", "a1")
    scheduler.add("a", "a2")
    scheduler.add("b", "b1")
    _drain(scheduler)
    assert sorted(scheduler.drop_waiting()) == [("a", "a2"), ("b", "b1")]
    assert scheduler.waiting == 0 and scheduler.running == 1
    scheduler.finish("a")
    assert scheduler.idle and scheduler.next_ready() is None


# An operation is ("add", session) or ("finish", index into the running sessions).
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from("abcdef")),
        st.tuples(st.just("finish"), st.integers(min_value=0, max_value=5)),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(concurrency=st.integers(min_value=1, max_value=4), ops=_ops)
def test_invariants_hold_for_any_sequence(concurrency: int, ops: list[tuple[str, object]]) -> None:
    scheduler: SessionScheduler[int] = SessionScheduler(concurrency)
    submitted: dict[str, list[int]] = {}
    started: dict[str, list[int]] = {}
    running: list[str] = []
    counter = 0
    for op, arg in ops:
        if op == "add":
            session = str(arg)
            submitted.setdefault(session, []).append(counter)
            scheduler.add(session, counter)
            counter += 1
        elif running:
            session = running.pop(int(str(arg)) % len(running))
            scheduler.finish(session)
        while (ready := scheduler.next_ready()) is not None:
            session, item = ready
            assert session not in running, "two items of one session running"
            running.append(session)
            started.setdefault(session, []).append(item)
        assert len(running) <= concurrency
        # Work-conserving: below the cap, every session with waiting items is running.
        if len(running) < concurrency:
            for session, items in submitted.items():
                if len(started.get(session, [])) < len(items):
                    assert session in running
    for session, items in started.items():
        assert items == submitted[session][: len(items)], "per-session order broken"


def test_turns_of_a_session_start_in_sequence_order_not_arrival_order() -> None:
    scheduler: SessionScheduler[str] = SessionScheduler(4)
    scheduler.add("s", "third", order=3)
    scheduler.add("s", "first", order=1)
    scheduler.add("s", "second", order=2)
    started = []
    while (ready := scheduler.next_ready()) is not None:
        started.append(ready[1])
        scheduler.finish("s")
    assert started == ["first", "second", "third"]


def test_a_deferred_turn_sleeps_until_woken_and_keeps_its_place() -> None:
    scheduler: SessionScheduler[str] = SessionScheduler(4)
    scheduler.add("s", "m2", order=2)
    scheduler.add("t", "other", order=1)
    session, item = scheduler.next_ready() or ("", "")
    assert (session, item) == ("s", "m2")
    scheduler.defer("s", "m2")
    assert scheduler.next_ready() == ("t", "other"), "a sleeping session holds nobody up"
    assert scheduler.next_ready() is None, "m2 sleeps"
    assert scheduler.waiting == 1 and scheduler.capacity == 2
    scheduler.wake("s")
    assert scheduler.next_ready() == ("s", "m2")


def test_an_earlier_message_arriving_wakes_its_session_and_runs_first() -> None:
    scheduler: SessionScheduler[str] = SessionScheduler(4)
    scheduler.add("s", "m2", order=2)
    assert scheduler.next_ready() == ("s", "m2")
    scheduler.defer("s", "m2")  # m1 has not arrived yet
    scheduler.add("s", "m1", order=1)  # recovery moved it here
    assert scheduler.next_ready() == ("s", "m1")
    scheduler.finish("s")
    assert scheduler.next_ready() == ("s", "m2")


def test_dropping_waiting_turns_includes_sleeping_ones() -> None:
    scheduler: SessionScheduler[str] = SessionScheduler(2)
    scheduler.add("s", "m1", order=1)
    scheduler.next_ready()
    scheduler.defer("s", "m1")
    scheduler.add("t", "x", order=1)
    assert sorted(scheduler.drop_waiting()) == [("s", "m1"), ("t", "x")]
    assert scheduler.idle
