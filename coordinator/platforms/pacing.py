"""How fast a bot writes to one chat: sends paced per chat, a streamed reply's edits bounded.

Pure policy (no clock of its own, no I/O): the caller passes ``now`` and
sleeps for what it is told. Telegram allows about one message per second
per chat (and 20 per minute in a group) and answers 429 with ``retry_after``
past that; Slack about one per second per channel. :class:`ChatPacer` books
each send (a new message or an edit) of a chat into a slot at least
``platform_chat_interval`` after the previous one; :class:`PreviewSchedule`
decides when a streamed reply's message is edited: only when its text
changed and at most once per ``platform_edit_interval``.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["ChatPacer", "PreviewSchedule", "preview_text"]

# Chats remembered at most; past this the ones whose slot has passed are forgotten.
_REMEMBERED = 4096
_ELLIPSIS = "…"


class ChatPacer:
    """Books each send to a chat at least ``interval`` seconds after the chat's previous one."""

    def __init__(self, interval: float) -> None:
        """Args: interval: Least seconds between two sends to one chat (0: no pacing)."""
        if interval < 0:
            raise ValueError(f"interval must be >= 0 seconds, got {interval!r}")
        self.interval = interval
        self._next: dict[Hashable, float] = {}

    def reserve(self, chat: Hashable, now: float) -> float:
        """Book the chat's next send slot; the seconds to wait before sending (0: at once)."""
        if not self.interval:
            return 0.0
        at = max(now, self._next.get(chat, now))
        self._next[chat] = at + self.interval
        if len(self._next) > _REMEMBERED:
            self._next = {c: t for c, t in self._next.items() if t > now}
        return at - now


class PreviewSchedule:
    """When to edit the message that shows a reply while it streams."""

    def __init__(self, interval: float) -> None:
        """Args: interval: Least seconds between two edits of the message (> 0)."""
        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.interval = interval
        self.shown = ""
        self._shown_at: float | None = None

    def due(self, text: str, now: float) -> bool:
        """Whether ``text`` should be shown now: it is new and the last edit is old enough."""
        if not text.strip() or text == self.shown:
            return False
        return self._shown_at is None or now - self._shown_at >= self.interval

    def wait(self, now: float) -> float:
        """Seconds until an edit may go out (0: now)."""
        if self._shown_at is None:
            return 0.0
        return max(0.0, self._shown_at + self.interval - now)

    def mark(self, text: str, now: float) -> None:
        """``text`` was sent (or edited in) at ``now``."""
        self.shown = text
        self._shown_at = now


def preview_text(text: str, limit: int) -> str:
    """What a streaming message shows of ``text``: its start, cut with ``…`` past ``limit``."""
    if len(text) <= limit:
        return text
    return text[: limit - len(_ELLIPSIS)] + _ELLIPSIS
