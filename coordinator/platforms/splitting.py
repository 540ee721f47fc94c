"""Split a reply into messages a platform accepts, without breaking code blocks.

Pure functions. Telegram refuses a message over 4,096 characters; Slack
truncates long ones. :func:`split_reply` cuts a long reply at the last
paragraph break, else line break, else space before the limit (a hard cut
only when a single word is longer), and when a cut falls inside a fenced
code block (```` ``` ````) it closes the fence at the end of that message and
opens it again, with its language tag, at the start of the next, so every
message renders as the same code.
"""

from __future__ import annotations

__all__ = ["SLACK_LIMIT", "TELEGRAM_LIMIT", "split_reply"]

TELEGRAM_LIMIT = 4096
"""Most characters of one Telegram message."""

SLACK_LIMIT = 3000
"""Most characters of one Slack message this gateway sends (Slack truncates past 40,000,
and renders past ~3,000 poorly)."""

_FENCE = "```"
_CLOSE = "\n" + _FENCE
_SMALLEST_LIMIT = 64


def _fence_after(opener: str, piece: str) -> str:
    """The fence line still open at the end of ``piece`` (``""``: none), given the one before."""
    open_line = opener
    for line in piece.split("\n"):
        stripped = line.strip()
        if stripped.startswith(_FENCE):
            open_line = "" if open_line else stripped
    return open_line


def _cut(text: str, budget: int) -> int:
    """Where to cut ``text`` so the first part holds at most ``budget`` characters."""
    window = text[: budget + 1]
    for separator in ("\n\n", "\n", " "):
        at = window.rfind(separator, 0, budget + 1)
        if at > budget // 4:
            return at
    return budget


def split_reply(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Split ``text`` into messages of at most ``limit`` characters each.

    Args:
        text: The reply.
        limit: The platform's largest message (at least 64).

    Returns:
        The messages in order; ``[text]`` when it fits; ``[]`` for an empty text.

    Raises:
        ValueError: ``limit`` is smaller than 64.
    """
    if limit < _SMALLEST_LIMIT:
        raise ValueError(f"limit must be at least {_SMALLEST_LIMIT} characters, got {limit}")
    messages: list[str] = []
    rest = text
    opener = ""
    while rest:
        prefix = opener + "\n" if opener else ""
        if len(prefix) + len(rest) <= limit:
            messages.append(prefix + rest)
            break
        budget = limit - len(prefix) - len(_CLOSE)
        cut = _cut(rest, budget)
        piece, rest = rest[:cut], rest[cut:]
        still_open = _fence_after(opener, piece)
        if still_open:  # inside code every character counts: drop only the separator
            rest = rest[1:] if rest[:1] in ("\n", " ") else rest
        else:
            rest = rest.lstrip("\n ")
        message = prefix + piece
        if still_open:
            message = message.rstrip("\n") + _CLOSE
        if message.strip():
            messages.append(message)
        opener = still_open
    return messages
