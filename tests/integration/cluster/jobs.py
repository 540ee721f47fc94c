"""Job functions for the rq serializer test (importable by rq's worker)."""

from __future__ import annotations

from typing import Any


def shout(text: str, *, times: int = 1) -> dict[str, Any]:
    """Return the text upper-cased ``times`` times, as plain data."""
    return {"text": text.upper() * times, "parts": [text] * times}


def fail(reason: str) -> None:
    """Fail with ``reason``."""
    raise ValueError(reason)
