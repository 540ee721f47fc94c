"""Slack in front of the cluster: Events API deliveries in, Web API replies out.

slack-sdk does the protocol: :class:`slack_sdk.signature.SignatureVerifier`
checks ``X-Slack-Signature`` against the app's signing secret, and
:class:`slack_sdk.WebClient` (pointed at ``slack_api_url``; synchronous, so it
runs on the gateway's threads) posts replies. An event is acknowledged as soon
as it is accepted, well within Slack's 3 s; the reply goes out asynchronously
from the bot's lease holder. A retried event (``X-Slack-Retry-Num``) has the
same ``event_id``, hence the same message id: it is answered once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import anyio
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import Clock, SignatureVerifier

from cluster.errors import InvalidMessage, RequestRefused
from coordinator.platforms.formatting import slack_mrkdwn
from coordinator.platforms.runner import Inbound, retry_delay
from coordinator.platforms.sessions import ChatPlace
from coordinator.platforms.splitting import SLACK_LIMIT
from coordinator.platforms.store import BotStore

__all__ = ["STALE_AFTER", "SlackSender", "check_signature", "inbound_from_event"]

log = logging.getLogger("coordinator.platforms.slack")

STALE_AFTER = 300.0
"""Seconds after which a signed request is refused as a replay (Slack's own advice)."""


def check_signature(
    signing_secret: str, body: bytes, headers: Mapping[str, str], *, now: float
) -> None:
    """Refuse a request not signed by the app's signing secret, or signed too long ago.

    Raises:
        RequestRefused: 401 with what was wrong.
    """
    stamp = headers.get("x-slack-request-timestamp", "")
    signature = headers.get("x-slack-signature", "")
    if not stamp.isdigit() or not signature:
        raise RequestRefused(
            "missing X-Slack-Request-Timestamp or X-Slack-Signature: send events from Slack",
            status=401,
            kind="unauthorized",
        )
    if abs(now - int(stamp)) > STALE_AFTER:
        raise RequestRefused(
            f"X-Slack-Request-Timestamp is {abs(now - int(stamp)):.0f}s away from now (more "
            f"than {STALE_AFTER:.0f}s): a replayed request; check the sender's clock",
            status=401,
            kind="unauthorized",
        )
    verifier = SignatureVerifier(signing_secret, clock=_FixedClock(now))
    if not verifier.is_valid(body, stamp, signature):
        raise RequestRefused(
            "X-Slack-Signature does not match the app's signing secret",
            status=401,
            kind="unauthorized",
        )


class _FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def inbound_from_event(payload: Mapping[str, Any]) -> Inbound | None:
    """The user message an ``event_callback`` carries, or ``None`` (bot echoes, edits, others).

    Raises:
        InvalidMessage: the payload lacks ``event_id`` or its event is malformed.
    """
    event = payload.get("event")
    event_id = payload.get("event_id")
    if not isinstance(event, Mapping) or not isinstance(event_id, str) or not event_id:
        raise InvalidMessage("an event_callback needs event_id and event: send Slack's payload")
    if event.get("type") not in ("message", "app_mention"):
        return None
    if event.get("bot_id") or event.get("subtype"):  # our own replies, edits, joins
        return None
    text, channel, ts = event.get("text"), event.get("channel"), event.get("ts", "0")
    if not isinstance(text, str) or not text or not isinstance(channel, str):
        return None
    try:
        seq = int(float(str(ts)) * 1_000_000)
    except ValueError:
        raise InvalidMessage(f"event ts must be a Slack timestamp, got {ts!r}") from None
    thread = event.get("thread_ts")
    return Inbound(
        delivery_id=event_id,
        seq=seq,
        place=ChatPlace(
            chat=channel,
            user=str(event.get("user") or ""),
            group=event.get("channel_type") != "im",
            thread=str(thread) if thread else "",
        ),
        text=text,
    )


class SlackSender:
    """Posts replies with ``chat.postMessage`` (mrkdwn), edits them with ``chat.update``.

    Every 429 is waited out (``Retry-After``) and the call made again.
    """

    limit = SLACK_LIMIT

    def __init__(self, client: WebClient, store: BotStore, run: Any) -> None:
        self.client = client
        self._store = store
        self._run = run

    async def send(self, chat: str, thread: str, text: str) -> str:
        """Post ``text`` to channel ``chat`` (in thread ``thread``); the message's ``ts``."""
        return await self._retrying(self._post, chat, thread, slack_mrkdwn(text))

    async def edit(self, chat: str, message_id: str, text: str) -> None:
        """Replace the text of message ``message_id`` (its ``ts``) in channel ``chat``."""
        await self._retrying(self._update, chat, message_id, slack_mrkdwn(text))

    async def _retrying(self, call: Any, *args: str) -> str:
        while True:
            try:
                return str(await self._run(call, *args))
            except SlackApiError as exc:
                if exc.response.status_code != 429:
                    raise
                await self._run(self._store.count, "rate_limited")
                after = exc.response.headers.get("Retry-After") or exc.response.headers.get(
                    "retry-after"
                )
                await anyio.sleep(retry_delay(float(after) if after else None))

    def _post(self, chat: str, thread: str, text: str) -> str:
        answer = self.client.chat_postMessage(channel=chat, text=text, thread_ts=thread or None)
        return str(answer.get("ts", ""))

    def _update(self, chat: str, ts: str, text: str) -> str:
        self.client.chat_update(channel=chat, ts=ts, text=text)
        return ts


def slack_client(token: str, api_url: str) -> WebClient:
    """A Web API client for ``token`` at ``api_url``."""
    return WebClient(token=token, base_url=api_url.rstrip("/") + "/", timeout=30)


def now() -> float:
    """Seconds since the epoch (the signature check's clock)."""
    return time.time()
