"""What the chat platform simulators share: a threaded HTTP server, body parsing, webhook posting.

The simulators (:mod:`agent.simulator.telegram_api`,
:mod:`agent.simulator.slack_api`) serve on the provider simulator's HTTP layer
(:class:`~agent.simulator._http.SimulatorHTTPServer`) and post deliveries to a
gateway with the standard library, so they need nothing of the product.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from agent.simulator._http import Router, SimulatorHTTPServer

__all__ = ["SimulatorThread", "parse_params", "post_json"]


def parse_params(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """A Bot/Web API call's parameters from a JSON or form-encoded body.

    Form values that are JSON (numbers, objects; python-telegram-bot encodes
    them so) are decoded; anything else stays a string.
    """
    kind = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if not body:
        return {}
    if "json" in kind:
        value = json.loads(body)
        return value if isinstance(value, dict) else {}
    params: dict[str, Any] = {}
    for name, values in parse_qs(body.decode("utf-8"), keep_blank_values=True).items():
        raw = values[-1]
        try:
            params[name] = json.loads(raw) if raw[:1] in "-0123456789[{" else raw
        except ValueError:
            params[name] = raw
    return params


def post_json(url: str, body: bytes, headers: Mapping[str, str], timeout: float = 10.0) -> int:
    """POST ``body`` to ``url``; the HTTP status (0 when the connection failed)."""
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json", **headers}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


class SimulatorThread:
    """Serves a router on ``host:port`` (0: a free port) in a daemon thread until :meth:`stop`."""

    def __init__(self, router: Router, host: str, port: int, name: str) -> None:
        self._httpd = SimulatorHTTPServer((host, port), router)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        self._thread.start()

    @property
    def stopping(self) -> threading.Event:
        """Set when the server stops (long polls wake on it)."""
        return self._httpd.stopping

    @property
    def url(self) -> str:
        """``http://host:port`` of the server."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        """Cut open connections, wake waiting requests, join the thread."""
        self._httpd.close_all()
        self._thread.join(timeout=10)
