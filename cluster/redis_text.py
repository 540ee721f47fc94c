"""Text of a Redis reply: the one bytes-to-str conversion the cluster uses.

Clients run with ``decode_responses=False`` (job payloads and snapshots are
bytes), so every string a reply carries arrives as ``bytes``; a fakeredis or
Lua reply may also give ``str`` or a number.
"""

from __future__ import annotations

from typing import Any

__all__ = ["text"]


def text(value: Any, errors: str = "strict") -> str:
    """``value`` as ``str``: bytes decoded as UTF-8 (with ``errors``), anything else ``str()``."""
    return value.decode("utf-8", errors) if isinstance(value, bytes) else str(value)
