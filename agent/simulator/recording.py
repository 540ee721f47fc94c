"""The log of the last requests the simulator received, for tests to inspect.

Tests use it to check what a client really sent: that two requests share a
byte-identical prefix, or that ``prompt_cache_key``, ``reasoning_effort`` or
``thinking`` were set. Credentials are never kept: every header that can
carry a key is dropped before the request is stored.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CREDENTIAL_HEADERS", "RecordedRequest", "RequestLog"]

CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"}
)
"""Header names (lower case) that are never recorded."""


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received, minus credentials.

    Attributes:
        provider: ``"openai"`` or ``"anthropic"``.
        method: the HTTP method.
        path: the request path (query string included).
        headers: header names in lower case; credential headers removed.
        body: the raw request body, byte for byte.
    """

    provider: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON (raises ``json.JSONDecodeError`` if it is not)."""
        return json.loads(self.body)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (the body as text), as ``GET /requests`` returns it."""
        return {
            "provider": self.provider,
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.body.decode("utf-8", errors="replace"),
        }


class RequestLog:
    """The last ``capacity`` requests, oldest first. Not thread-safe: the simulator locks.

    Args:
        capacity: how many requests to keep.
    """

    def __init__(self, capacity: int = 200) -> None:
        self._requests: deque[RecordedRequest] = deque(maxlen=max(1, capacity))

    def add(
        self, provider: str, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> None:
        """Record a request; credential headers are dropped here."""
        safe = {
            name.lower(): value
            for name, value in headers.items()
            if name.lower() not in CREDENTIAL_HEADERS
        }
        self._requests.append(RecordedRequest(provider, method, path, safe, bytes(body)))

    def snapshot(self) -> list[RecordedRequest]:
        """The recorded requests, oldest first."""
        return list(self._requests)

    def clear(self) -> None:
        """Forget every recorded request."""
        self._requests.clear()
