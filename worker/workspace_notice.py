"""What the agent is told when its workspace moved to this host and not all of it came along.

Pure text: no file system, no Redis, no clock (``now`` is a parameter). The
worker adds the result to the turn's user message (:func:`agent.turn_notice.with_notice`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from worker.workspace_archive import Omitted

__all__ = ["LostProcess", "restore_notice"]

_LISTED = 20
"""Most paths named per reason; the rest are counted."""


@dataclass(frozen=True)
class LostProcess:
    """A background process of the session that did not move with it."""

    name: str
    command: str


def _size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MiB"
    if size >= 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size} B"


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _path(path: bytes) -> str:
    return path.decode("utf-8", "backslashreplace")


def restore_notice(
    *,
    omitted: Sequence[Omitted],
    lost: Sequence[LostProcess],
    taken_at: float,
    now: float,
    failure: str | None = None,
) -> str | None:
    """The notice for a restored workspace, or ``None`` when nothing is missing.

    Args:
        omitted: entries the snapshot did not carry, or that could not be written here.
        lost: background processes of the session that are not running on this host.
        taken_at: when the snapshot was stored (seconds, same clock as ``now``).
        now: the current time.
        failure: why the snapshot could not be restored at all, if it could not.
    """
    if failure is None and not omitted and not lost:
        return None
    parts = [
        "this conversation moved to another worker host since your last turn. "
        + (
            f"Your workspace could NOT be restored ({failure}); treat its files as gone."
            if failure is not None
            else f"Your workspace was restored from a snapshot taken {_age(now - taken_at)} ago."
        )
    ]
    by_reason: dict[str, list[Omitted]] = {}
    for entry in omitted:
        by_reason.setdefault(entry.reason, []).append(entry)
    for reason, entries in sorted(by_reason.items()):
        shown = ", ".join(
            _path(e.path) + (f" ({_size(e.size)})" if e.size else "") for e in entries[:_LISTED]
        )
        more = f" and {len(entries) - _LISTED} more" if len(entries) > _LISTED else ""
        parts.append(f"Not restored, {reason}: {shown}{more}.")
    if lost:
        shown = "; ".join(f"{p.name}: {p.command}" for p in lost[:_LISTED])
        more = f" and {len(lost) - _LISTED} more" if len(lost) > _LISTED else ""
        parts.append(
            "Background processes started on the previous host are not running here "
            f"(restart them if you still need them): {shown}{more}."
        )
    return " ".join(parts)
