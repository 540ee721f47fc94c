"""A small server-sent-events reader for the tests (what a browser's EventSource does)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Event:
    type: str
    data: dict[str, Any]
    id: str | None


def events(response: httpx.Response) -> Iterator[Event]:
    """Parse the events of a streaming response as they arrive."""
    assert response.headers["content-type"].startswith("text/event-stream"), response.read()
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in fields:
                yield Event(
                    fields.get("event", "message"), json.loads(fields["data"]), fields.get("id")
                )
            fields = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
