"""The collect debounce: join the run once no message arrived for the window (fake clock)."""

from __future__ import annotations

from cluster.folds import FoldCandidate, FoldRun, collect_wait_ms

WINDOW = 2000


def _run(now: int, *arrivals: int | None, own: int | None = None) -> FoldRun:
    return FoldRun(
        now_ms=now,
        own_arrived_ms=own,
        candidates=tuple(FoldCandidate(f"j{i}", i + 2, a) for i, a in enumerate(arrivals)),
    )


def test_a_run_waits_until_the_window_passed_since_its_newest_message() -> None:
    assert collect_wait_ms(_run(10_000, 9_000, 9_500), WINDOW) == 1_500
    assert collect_wait_ms(_run(11_500, 9_000, 9_500), WINDOW) == 0


def test_a_late_arrival_restarts_the_window() -> None:
    assert collect_wait_ms(_run(11_000, 9_000, 10_900), WINDOW) == 1_900


def test_the_turns_own_arrival_counts() -> None:
    assert collect_wait_ms(_run(10_000, 8_000, own=9_800), WINDOW) == 1_800


def test_no_window_or_no_arrival_times_waits_for_nothing() -> None:
    assert collect_wait_ms(_run(10_000, 9_999), 0) == 0
    assert collect_wait_ms(_run(10_000, None, None), WINDOW) == 0
    assert collect_wait_ms(_run(10_000), WINDOW) == 0
