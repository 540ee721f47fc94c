"""Per-chat pacing of sends and the bounded edit rate of a streamed reply (fake clock)."""

from __future__ import annotations

import pytest

from coordinator.platforms.pacing import ChatPacer, PreviewSchedule, preview_text


def test_sends_to_one_chat_are_spaced_by_the_interval_and_other_chats_are_not_held() -> None:
    pacer = ChatPacer(1.0)
    assert pacer.reserve("c1", now=100.0) == 0.0
    assert pacer.reserve("c1", now=100.0) == 1.0  # booked one interval after the first
    assert pacer.reserve("c1", now=100.2) == pytest.approx(1.8)
    assert pacer.reserve("c2", now=100.2) == 0.0
    assert pacer.reserve("c1", now=200.0) == 0.0  # an idle chat sends at once


def test_no_pacing_at_interval_zero_and_negative_refused() -> None:
    assert ChatPacer(0).reserve("c", now=0.0) == 0.0
    assert ChatPacer(0).reserve("c", now=0.0) == 0.0
    with pytest.raises(ValueError, match="interval must be >= 0"):
        ChatPacer(-1)


def test_preview_is_edited_at_most_once_per_interval_and_only_when_changed() -> None:
    schedule = PreviewSchedule(1.0)
    assert schedule.due("Hel", now=0.0)
    schedule.mark("Hel", now=0.0)
    assert not schedule.due("Hello", now=0.5)
    assert schedule.wait(now=0.5) == 0.5
    assert schedule.due("Hello", now=1.0)
    schedule.mark("Hello", now=1.0)
    assert not schedule.due("Hello", now=5.0), "an unchanged text is not edited again"
    assert not schedule.due("   ", now=5.0), "nothing to show yet"


def test_streamed_edits_over_a_burst_of_text_never_exceed_the_rate() -> None:
    schedule = PreviewSchedule(0.7)
    shown_at = []
    text = ""
    for tick in range(200):  # a delta every 10 ms for 2 s
        now = tick * 0.01
        text += "x"
        if schedule.due(text, now):
            schedule.mark(text, now)
            shown_at.append(now)
    gaps = [b - a for a, b in zip(shown_at, shown_at[1:], strict=False)]
    assert len(shown_at) == 3 and all(gap >= 0.7 for gap in gaps)


def test_preview_text_is_cut_with_an_ellipsis_at_the_limit() -> None:
    assert preview_text("short", 10) == "short"
    cut = preview_text("x" * 20, 10)
    assert len(cut) == 10 and cut.endswith("…")
