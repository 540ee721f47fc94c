"""Cron expressions and one-shot times of scheduled messages (UTC, pure: the time is passed in)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cluster.cron import check_cron, next_cron_fire, next_fire_after, parse_at
from cluster.errors import InvalidMessage


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


NOW = ms("2026-12-06T10:02:30")


def test_next_firing_is_the_first_strictly_after_the_given_time() -> None:
    assert next_cron_fire("*/5 * * * *", NOW) == ms("2026-12-06T10:05:00")
    assert next_cron_fire("*/5 * * * *", ms("2026-12-06T10:05:00")) == ms("2026-12-06T10:10:00")
    assert next_cron_fire("0 9 * * 1-5", NOW) == ms("2026-12-07T09:00:00")  # Sunday -> Monday


def test_missed_firings_are_skipped_after_a_long_outage() -> None:
    fired = ms("2026-12-06T08:00:00")  # claimed two hours late
    assert next_fire_after("*/5 * * * *", fired, NOW) == ms("2026-12-06T10:05:00")
    assert next_fire_after("*/5 * * * *", fired, fired) == ms("2026-12-06T08:05:00")


def test_a_one_shot_schedule_has_no_next_firing() -> None:
    assert next_fire_after(None, NOW, NOW) is None


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("*/5 * * *", "five fields"),
        ("* * * * * *", "five fields"),
        ("61 * * * *", "not a valid cron expression"),
        ("0 0 30 2 *", "never fires"),
        ("", "five-field cron expression"),
        (5, "five-field cron expression"),
        ("* " * 60, "at most 100 characters"),
    ],
)
def test_bad_cron_expressions_say_what_is_wrong(expression: object, says: str) -> None:
    with pytest.raises(InvalidMessage, match=says):
        check_cron(expression, now_ms=NOW)


def test_good_cron_expressions_and_aliases_pass() -> None:
    assert check_cron(" 0 9 * * mon-fri ", now_ms=NOW) == "0 9 * * mon-fri"
    assert check_cron("@hourly", now_ms=NOW) == "@hourly"


def test_at_times_are_utc_unless_they_carry_an_offset() -> None:
    assert parse_at("2026-12-06T11:00:00Z", now_ms=NOW) == ms("2026-12-06T11:00:00")
    assert parse_at("2026-12-06T11:00:00", now_ms=NOW) == ms("2026-12-06T11:00:00")
    assert parse_at("2026-12-06T12:00:00+01:00", now_ms=NOW) == ms("2026-12-06T11:00:00")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("2026-12-06T10:00:00Z", "in the past"),
        ("next tuesday", "ISO 8601"),
        (None, "ISO 8601"),
    ],
)
def test_bad_at_times_are_refused(value: object, says: str) -> None:
    with pytest.raises(InvalidMessage, match=says):
        parse_at(value, now_ms=NOW)
