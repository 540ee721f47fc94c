"""A Slack simulator: the Web API calls a bot replies with, and signed Events API deliveries.

Served at ``/api/<method>`` like ``slack.com/api`` (so slack-sdk's
``WebClient`` works against it with ``base_url``): ``auth.test``,
``chat.postMessage``, ``chat.update``, with the bot token checked and,
after :meth:`SlackSimulator.rate_limit`, ``429`` with ``Retry-After``.
:meth:`SlackSimulator.deliver_event` signs an event with an app's signing
secret (``v0`` HMAC-SHA256 of ``v0:timestamp:body``) and posts it as Slack
does, retrying when it is not acknowledged with a 2xx (``X-Slack-Retry-Num``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.simulator._http import Outcome
from agent.simulator.platform_http import SimulatorThread, parse_params, post_json

__all__ = ["SlackMessage", "SlackSimulator", "sign"]


@dataclass
class SlackMessage:
    """A message the bot posted."""

    channel: str
    ts: str
    text: str
    thread_ts: str | None = None


def sign(signing_secret: str, timestamp: int, body: bytes) -> str:
    """Slack's ``X-Slack-Signature`` of ``body`` sent at ``timestamp``."""
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


class SlackSimulator:
    """The simulated Slack (thread-safe; start with ``with SlackSimulator() as sim``)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self._lock = threading.Condition()
        self._tokens: set[str] = set()
        self._posted: list[SlackMessage] = []
        self._rate_limits: list[int] = []
        self._clock = 1_700_000_000.0
        self.rate_limited = 0
        """Calls answered 429."""
        self._server: SimulatorThread | None = None

    def __enter__(self) -> SlackSimulator:
        self._server = SimulatorThread(self, self._host, self._port, "slack-simulator")
        return self

    def __exit__(self, *_exc: object) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    @property
    def url(self) -> str:
        """The server root; slack-sdk's ``base_url`` is ``url + "/api/"``."""
        assert self._server is not None, "start the simulator first (with SlackSimulator())"
        return self._server.url

    # -- the test's side -------------------------------------------------------

    def add_token(self, token: str) -> None:
        """Accept the bot token ``token`` (any other gets ``invalid_auth``)."""
        with self._lock:
            self._tokens.add(token)

    def rate_limit(self, count: int, retry_after: int = 1) -> None:
        """Answer the next ``count`` posts with 429 and ``Retry-After``."""
        with self._lock:
            self._rate_limits.extend([retry_after] * count)

    def event(
        self,
        channel: str,
        text: str,
        *,
        user: str = "U1",
        thread_ts: str | None = None,
        channel_type: str = "channel",
    ) -> dict[str, Any]:
        """An ``event_callback`` payload of a user's message, with a fresh ``event_id``."""
        with self._lock:
            self._clock += 1
            ts = f"{self._clock:.6f}"
        event: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": ts,
            "channel_type": channel_type,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return {
            "type": "event_callback",
            "team_id": "T1",
            "api_app_id": "A1",
            "event": event,
            "event_id": f"Ev{int(self._clock)}{channel}",
            "event_time": int(self._clock),
        }

    def deliver_event(
        self,
        url: str,
        payload: Mapping[str, Any],
        *,
        signing_secret: str,
        retry: int = 0,
        timestamp: int | None = None,
    ) -> int:
        """POST ``payload`` signed as Slack does (``retry`` > 0: Slack's nth retry); the status."""
        body = json.dumps(payload).encode()
        stamp = int(time.time()) if timestamp is None else timestamp
        headers = {
            "X-Slack-Request-Timestamp": str(stamp),
            "X-Slack-Signature": sign(signing_secret, stamp, body),
        }
        if retry:
            headers["X-Slack-Retry-Num"] = str(retry)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        return post_json(url, body, headers)

    def messages(self, channel: str) -> list[SlackMessage]:
        """What the bot posted to ``channel``, in order."""
        with self._lock:
            return [m for m in self._posted if m.channel == channel]

    def wait_messages(self, channel: str, count: int, timeout: float = 30.0) -> list[SlackMessage]:
        """Wait until the bot posted ``count`` messages to ``channel``; returns them (or fewer)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [m for m in self._posted if m.channel == channel]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    return found
                self._lock.wait(min(left, 0.2))

    # -- the API ---------------------------------------------------------------

    def route(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Outcome:
        """Serve one Web API call."""
        call = path.split("?", 1)[0].strip("/").removeprefix("api/")
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        try:
            params = parse_params(headers, body)
        except ValueError:
            return Outcome(body={"ok": False, "error": "invalid_json"})
        with self._lock:
            if auth.removeprefix("Bearer ") not in self._tokens:
                return Outcome(body={"ok": False, "error": "invalid_auth"})
            if call == "auth.test":
                return Outcome(body={"ok": True, "user_id": "UBOT", "team_id": "T1"})
            if call not in ("chat.postMessage", "chat.update"):
                return Outcome(status=404, body={"ok": False, "error": "unknown_method"})
            if self._rate_limits:
                after = self._rate_limits.pop(0)
                self.rate_limited += 1
                return Outcome(
                    status=429,
                    body={"ok": False, "error": "ratelimited"},
                    headers={"Retry-After": str(after)},
                )
            channel, text = str(params.get("channel", "")), params.get("text")
            if not channel or not isinstance(text, str) or not text:
                return Outcome(body={"ok": False, "error": "no_text"})
            if call == "chat.update":
                for posted in self._posted:
                    if posted.channel == channel and posted.ts == str(params.get("ts")):
                        posted.text = text
                        return Outcome(body={"ok": True, "channel": channel, "ts": posted.ts})
                return Outcome(body={"ok": False, "error": "message_not_found"})
            self._clock += 0.001
            thread = params.get("thread_ts")
            posted = SlackMessage(
                channel, f"{self._clock:.6f}", text, str(thread) if thread else None
            )
            self._posted.append(posted)
            self._lock.notify_all()
            return Outcome(body={"ok": True, "channel": channel, "ts": posted.ts})
