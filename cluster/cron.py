"""When a schedule fires: five-field cron expressions and one-shot times, in UTC (pure).

A schedule either fires once (``at``, epoch milliseconds) or on a standard
five-field cron expression (minute, hour, day of month, month, day of week;
``*/5``, ranges, lists, names and the ``@hourly``-style aliases), always read
in UTC. Parsing and stepping use croniter (MIT, already installed as a
dependency of rq); this module wraps it in typed, validated functions that
take the time as an argument and never read a clock.

A cron schedule's next firing is computed after the later of the firing just
claimed and "now": a cluster that was down for an hour fires a ``*/5``
schedule once when it comes back, not twelve times in a row.
"""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import CroniterBadDateError, croniter

from cluster.errors import InvalidMessage

__all__ = ["MAX_CRON_CHARS", "check_cron", "next_cron_fire", "next_fire_after", "parse_at"]

MAX_CRON_CHARS = 100
_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def check_cron(expression: object, *, now_ms: int) -> str:
    """Return ``expression`` if it is a five-field cron expression that fires at some point.

    Raises:
        InvalidMessage: not a string, not five fields (seconds are not
            supported), a field out of range, or a date that never comes
            (``0 0 30 2 *``).
    """
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidMessage(
            f"cron must be a five-field cron expression such as '*/5 * * * *', got {expression!r}"
        )
    text = expression.strip()
    if len(text) > MAX_CRON_CHARS:
        raise InvalidMessage(f"cron must be at most {MAX_CRON_CHARS} characters, got {len(text)}")
    if text.lower() not in _ALIASES and len(text.split()) != 5:
        raise InvalidMessage(
            f"cron must have five fields (minute hour day-of-month month day-of-week, UTC), "
            f"got {len(text.split())} in {text!r}"
        )
    if not croniter.is_valid(text):
        raise InvalidMessage(
            f"cron {text!r} is not a valid cron expression: each field must be '*', a number, "
            "a range 'a-b', a step '*/n' or a list 'a,b' within minute 0-59, hour 0-23, "
            "day 1-31, month 1-12, weekday 0-6"
        )
    next_cron_fire(text, now_ms)
    return text


def next_cron_fire(expression: str, after_ms: int) -> int:
    """The first firing of ``expression`` strictly after ``after_ms`` (epoch ms, UTC).

    Raises:
        InvalidMessage: the expression never fires again (a date that never comes).
    """
    try:
        fire = croniter(expression, _utc(after_ms)).get_next(float)
    except CroniterBadDateError:
        raise InvalidMessage(
            f"cron {expression!r} never fires (no such date, e.g. February 30): fix the "
            "day-of-month and month fields"
        ) from None
    return int(round(float(fire) * 1000))


def next_fire_after(expression: str | None, fired_ms: int, now_ms: int) -> int | None:
    """When a schedule fires next once its firing at ``fired_ms`` is claimed.

    Args:
        expression: the cron expression, ``None`` for a one-shot schedule.
        fired_ms: the firing just claimed (epoch ms).
        now_ms: the current time (epoch ms): missed firings before it are skipped.

    Returns:
        Epoch ms of the next firing, ``None`` when the schedule is done.
    """
    if expression is None:
        return None
    try:
        return next_cron_fire(expression, max(fired_ms, now_ms))
    except InvalidMessage:
        return None


def parse_at(value: object, *, now_ms: int) -> int:
    """Epoch ms of an ISO 8601 time in the future (``2026-12-06T10:00:00Z``).

    A time without an offset is read as UTC.

    Raises:
        InvalidMessage: not an ISO 8601 string, or not in the future.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidMessage(
            f"at must be an ISO 8601 time such as '2026-12-06T10:00:00Z', got {value!r}"
        )
    text = value.strip()
    try:
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise InvalidMessage(
            f"at must be an ISO 8601 time such as '2026-12-06T10:00:00Z', got {value!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ms = int(round(when.timestamp() * 1000))
    if ms <= now_ms:
        raise InvalidMessage(
            f"at {text!r} is in the past (now is {_utc(now_ms).isoformat(timespec='seconds')}): "
            "give a future time, or use cron for a repeating message"
        )
    return ms
