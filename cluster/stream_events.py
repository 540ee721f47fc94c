"""The wire shape of a turn's live events: what the worker publishes and the gateway reads.

When the coordinator accepts a message from a streaming caller it sets the
job attribute :data:`STREAM_ATTR`; the worker (``worker/streaming.py``)
then appends each event of the turn, as one JSON entry ``{"e": ...}``, to
the message's bounded Redis stream (``Keyspace.turn_stream``). Any
coordinator instance reads it from the client's ``Last-Event-ID``
(``coordinator/http/sse.py``).

Events (the ``type`` of each JSON entry):

================  ===================================================================
``turn_start``    the worker began the turn (``worker_id``, ``fence``); a second one
                  means the turn restarted elsewhere (a drain or a crash handed it on):
                  discard the text deltas received so far
``delta``         model text (``text``); consecutive deltas are batched
``tool_start``    the model called a tool (``name``, ``arguments``)
``tool_progress`` what the agent is doing while a tool runs (``name``, ``text``)
``tool_result``   the tool's result (``name``, ``tool_call_id``, ``content`` cut at
                  :data:`TOOL_RESULT_CHARS`, ``truncated``)
``status``        what the agent is doing otherwise (``text``)
``final``         published after the commit: the reply (:func:`final_event`)
================  ===================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["FINAL_FIELDS", "STREAM_ATTR", "TOOL_RESULT_CHARS", "final_event"]

STREAM_ATTR: Final = "stream"
"""Job attribute the coordinator sets (to 1) when the caller streams the turn."""

TOOL_RESULT_CHARS: Final = 2000
"""A tool result's content is cut at this many characters in its event."""

FINAL_FIELDS: Final = (
    "message_id",
    "text",
    "worker_id",
    "turn",
    "cache_hit",
    "interrupted",
    "compressed",
    "fallback",
    "usage",
    "reset",
    "stopped",
    "folded",
    "folded_into",
)
"""The ``final`` event's fields, taken from the committed reply record."""


def final_event(reply: Mapping[str, Any], *, rolled_back: bool | None = None) -> dict[str, Any]:
    """The ``final`` event of a reply record.

    The worker publishes it after the commit; the coordinator builds the same
    from a reply it reads from the reply list.
    """
    final: dict[str, Any] = {"type": "final"}
    final.update({k: reply[k] for k in FINAL_FIELDS if k in reply})
    final["rolled_back"] = bool(reply.get("rolled_back")) if rolled_back is None else rolled_back
    return final
