"""A reply shown while its turn runs: the turn's events followed, one message edited.

When ``platform_edit_interval`` is above 0 a chat message is submitted as a
streaming turn (the worker publishes its events, :mod:`worker.streaming`),
and the bot's lease holder follows them with
:func:`~coordinator.http.sse.turn_events`, the same reader the HTTP SSE path
uses. :func:`follow_turn` builds the text so far (model text, and each tool
call with the start of its output as a code block) and hands it to ``show``
whenever :class:`~coordinator.platforms.pacing.PreviewSchedule` says an
edit is due, so the message is edited at most once per interval; the runner
then puts the final text in that message (and sends what passes the length
limit as further messages).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from coordinator.http.gateway import Gateway
from coordinator.http.sse import turn_events
from coordinator.platforms.pacing import PreviewSchedule, preview_text

__all__ = ["Followed", "TurnPreview", "follow_turn"]

TOOL_OUTPUT_CHARS = 600
"""A tool's output is shown up to this many characters while the reply streams."""
_TOOL_ARGUMENTS_CHARS = 120
# Seconds between two looks at whether a preview edit is due while no event comes.
_PREVIEW_TICK = 1.0


@dataclass(frozen=True)
class Followed:
    """How a followed turn ended.

    Attributes:
        text: The final reply (``""`` when it failed or was not seen).
        failed: The turn failed (its error is in the logs, not shown to the chat).
        seen: Whether the stream ended with the turn's end; ``False``: it timed
            out and the caller waits for the reply another way.
        error: Why it failed (for the logs).
    """

    text: str
    failed: bool = False
    seen: bool = True
    error: str = ""


class TurnPreview:
    """The Markdown a streaming reply shows: model text and tool calls, in order."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def apply(self, event: dict[str, Any]) -> None:
        """Add one turn event (``turn_start`` again: the turn restarted elsewhere, start over)."""
        kind = event.get("type")
        if kind == "turn_start":
            self._parts.clear()
        elif kind == "delta":
            self._parts.append(str(event.get("text", "")))
        elif kind == "tool_start":
            arguments = event.get("arguments")
            shown = arguments if isinstance(arguments, str) else json.dumps(arguments)
            shown = (
                shown
                if len(shown) <= _TOOL_ARGUMENTS_CHARS
                else shown[:_TOOL_ARGUMENTS_CHARS] + "…"
            )
            self._parts.append(f"\n```\n▶ {event.get('name', 'tool')} {shown}\n```\n")
        elif kind == "tool_result":
            content = str(event.get("content", "")).replace("```", "'''")
            if len(content) > TOOL_OUTPUT_CHARS:
                content = content[:TOOL_OUTPUT_CHARS] + "…"
            if content.strip():
                self._parts.append(f"```\n{content.rstrip()}\n```\n")

    @property
    def text(self) -> str:
        """The preview so far."""
        return "".join(self._parts).strip()


async def follow_turn(
    gateway: Gateway,
    session_key: str,
    message_id: str,
    *,
    schedule: PreviewSchedule,
    limit: int,
    show: Callable[[str], Awaitable[None]],
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
) -> Followed:
    """Follow a message's turn events, showing its preview when due; how it ended.

    Args:
        gateway: The cluster (its event streams and replies).
        session_key: The message's session.
        message_id: The message.
        schedule: When an edit is due (its ``shown`` text is what the chat sees).
        limit: The platform's longest message (a longer preview is cut).
        show: Sends the preview (a new message the first time, then edits it).
        timeout: Give up after this many seconds (``Followed.seen`` is ``False``).
        clock: Monotonic seconds.
    """
    preview = TurnPreview()
    events = turn_events(
        gateway, session_key, message_id, after=None, timeout=timeout, tick=_PREVIEW_TICK
    )
    async for event in events:
        if event is None:  # a read round ended: show the text so far if an edit is due
            text = preview_text(preview.text, limit)
            if schedule.due(text, clock()):
                await show(text)
                schedule.mark(text, clock())
            continue
        if event.type == "final":
            return Followed(str(event.data.get("text") or ""))
        if event.type == "error":
            error = event.data.get("error") or {}
            if isinstance(error, dict) and error.get("type") == "turn_timeout":
                return Followed("", seen=False)
            message = error.get("message", "") if isinstance(error, dict) else error
            return Followed("", failed=True, error=str(message))
        preview.apply(event.data)
    return Followed("", seen=False)
