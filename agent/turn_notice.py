"""Notices the cluster adds to a turn's user message (the frozen system prompt never changes).

When something the agent relies on changed between two turns outside the
conversation (its workspace moved to another host and part of it could not
follow), the agent is told in the turn's new user-side content: a paragraph
``[agent-cluster notice: ...]`` before the user's text. It is stored in the
history like the rest of the message, so the conversation shows what the
model was told, and the cached prefix (system prompt, tool schemas, earlier
messages) stays byte-identical.
"""

from __future__ import annotations

__all__ = ["NOTICE_PREFIX", "split_notice", "with_notice"]

NOTICE_PREFIX = "[agent-cluster notice: "
_END = "]\n\n"


def with_notice(text: str, notice: str | None) -> str:
    """The user's ``text`` preceded by ``notice`` (unchanged when there is none)."""
    if not notice:
        return text
    return f"{NOTICE_PREFIX}{notice}{_END}{text}"


def split_notice(text: str) -> tuple[str | None, str]:
    """Split a message made by :func:`with_notice` into ``(notice, user text)``.

    A message that does not start with a notice comes back as ``(None, text)``.
    """
    if not text.startswith(NOTICE_PREFIX):
        return None, text
    end = text.find(_END, len(NOTICE_PREFIX))
    if end < 0:
        return None, text
    return text[len(NOTICE_PREFIX) : end], text[end + len(_END) :]
