"""One bot on one gateway: compete for the bot's lease; while holding it, poll and send replies.

Every gateway serving a bot runs a :class:`BotRunner` for it. Any gateway
accepts the bot's webhooks (:meth:`BotRunner.accept`: submit to the cluster
under the platform's message id, then record the delivery in the bot's
inbox, once). Exactly one of them, the holder of the bot's lease in Redis,
polls Telegram (when the bot polls) and sends every reply: it reads the inbox,
waits for each delivery's reply from the cluster and sends it, one chat at a
time in the platform's order, then records it as delivered under its fencing
token. When the holder dies its lease expires (``platform_lease_ttl``) and
another gateway takes over the inbox and the offset; a holder that lost its
lease stops polling and sending at its next renewal or fenced write.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import anyio

from cluster.platform_bots import BotSpec
from cluster.settings import ClusterSettings
from coordinator.http.gateway import Gateway
from coordinator.platforms.sessions import ChatPlace, message_id_for, session_key_for
from coordinator.platforms.splitting import split_reply
from coordinator.platforms.store import BotStore, Delivery

__all__ = ["BotRunner", "Inbound", "Sender", "holder_id"]

log = logging.getLogger("coordinator.platforms")

_INBOX_SCAN = 0.1
FAILED_TEXT = "Sorry, this message could not be answered. Please send it again."
"""What a chat sees when its message's turn failed (the error itself stays in the logs)."""


def holder_id() -> str:
    """This process's name as a lease holder: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Sender(Protocol):
    """Sends one message to a chat, waiting out the platform's rate limits (never dropping it)."""

    limit: int
    """The platform's longest message, in characters."""

    async def send(self, chat: str, thread: str, text: str) -> None:
        """Send ``text`` to ``chat`` (in ``thread`` when not empty)."""
        ...


class Inbound:
    """A chat message as the runner needs it, from a Telegram update or a Slack event."""

    def __init__(self, *, delivery_id: str, seq: int, place: ChatPlace, text: str) -> None:
        self.delivery_id = delivery_id
        self.seq = seq
        self.place = place
        self.text = text


class LeaseLost(Exception):
    """The runner's lease of its bot passed to another process."""


class BotRunner:
    """One bot's lease holder loop and its accepting side, on one gateway."""

    def __init__(
        self,
        *,
        gateway: Gateway,
        spec: BotSpec,
        store: BotStore,
        sender: Sender,
        poll: Callable[[BotRunner, int], Coroutine[Any, Any, None]] | None = None,
        holder: str | None = None,
    ) -> None:
        """Bind the runner.

        Args:
            gateway: The gateway's connection to the cluster.
            spec: The bot (platform, name, mode, tenant).
            store: The bot's lease, offset and inbox.
            sender: How replies reach the chat.
            poll: The polling loop to run while holding the lease (Telegram
                ``poll`` bots), called with the runner and the fencing token.
            holder: This process's name in the lease (default :func:`holder_id`).
        """
        self.gateway = gateway
        self.settings: ClusterSettings = gateway.settings
        self.spec = spec
        self.store = store
        self.sender = sender
        self._poll = poll
        self.holder = holder or holder_id()
        self.token: int | None = None
        self._chats_busy: set[tuple[str, str]] = set()

    @property
    def ttl(self) -> float:
        """The lease's time to live."""
        return self.settings.platform_lease_ttl

    # -- accepting (any gateway) -------------------------------------------------

    async def accept(self, inbound: Inbound) -> bool:
        """Submit a chat message to the cluster and record its delivery; ``False``: a duplicate.

        The cluster deduplicates on the message id, so a second gateway or a
        redelivery submitting it again runs no second turn; the inbox then
        records it once, so one reply is sent.

        Raises:
            NoLiveWorkers, ClusterUnavailable: nothing was accepted (the
                platform should retry: the webhook answers 503).
        """
        spec = self.spec
        session_key = session_key_for(
            spec.platform,
            spec.name,
            spec.tenant,
            inbound.place,
            group_sessions=self.settings.platform_group_sessions,
        )
        message_id = message_id_for(spec.platform, spec.name, inbound.delivery_id)
        attrs: dict[str, Any] = {"platform": spec.platform, "chat_id": inbound.place.chat}
        if inbound.place.user:
            attrs["user_id"] = inbound.place.user
        handle = await self.gateway.submit(
            session_key,
            inbound.text,
            message_id=message_id,
            strategy=self.settings.platform_busy_strategy,
            attrs=attrs,
        )
        inline = ""
        if handle.status == "stopped":
            inline = (await self.gateway.run(handle.result, 0.0)).text
        delivery = Delivery(
            message_id=message_id,
            session_key=session_key,
            chat=inbound.place.chat,
            thread=inbound.place.thread,
            seq=inbound.seq,
            accepted_at=time.time(),
            inline=inline,
        )
        return await self.gateway.run(self.store.accept, delivery)

    # -- holding the lease (one gateway) -----------------------------------------

    async def run(self) -> None:
        """Compete for the lease forever; while holding it, poll (if polling) and send replies."""
        while True:
            token = await self.gateway.run(self.store.acquire, self.holder, self.ttl)
            if token is None:
                await anyio.sleep(self.ttl / 4)
                continue
            log.info("%s bot %r: %s holds the lease (token %d)", self.spec.platform, self.spec.name, self.holder, token)
            self.token = token
            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(self._renew, token)
                    group.start_soon(self._deliver, token, group)
                    if self._poll is not None:
                        group.start_soon(self._poll, self, token)
            except Exception as exc:  # a lost lease, Redis down: compete again
                log.warning(
                    "%s bot %r: %s stops holding the lease: %r",
                    self.spec.platform,
                    self.spec.name,
                    self.holder,
                    exc,
                )
                await anyio.sleep(min(1.0, self.ttl / 4))
            finally:
                self.token = None
                self._chats_busy.clear()

    async def release(self) -> None:
        """Give the lease up (shutdown, drain), so another gateway takes over at once."""
        token = self.token
        if token is not None:
            with anyio.CancelScope(shield=True):
                await self.gateway.run(self.store.release, token)

    async def _renew(self, token: int) -> None:
        while True:
            await anyio.sleep(self.ttl / 3)
            if not await self.gateway.run(self.store.extend, token, self.ttl):
                raise LeaseLost(self.spec.name)

    async def _deliver(self, token: int, group: anyio.abc.TaskGroup) -> None:
        while True:
            waiting = await self.gateway.run(self.store.waiting)
            for delivery in waiting:
                chat = (delivery.chat, delivery.thread)
                if chat not in self._chats_busy:
                    self._chats_busy.add(chat)
                    group.start_soon(self._deliver_chat, token, chat)
            await anyio.sleep(_INBOX_SCAN)

    async def _deliver_chat(self, token: int, chat: tuple[str, str]) -> None:
        """Send the replies of one chat (thread), oldest first, until none waits."""
        try:
            while True:
                waiting = [
                    d for d in await self.gateway.run(self.store.waiting) if (d.chat, d.thread) == chat
                ]
                if not waiting:
                    return
                await self._deliver_one(token, waiting[0])
        finally:
            self._chats_busy.discard(chat)

    async def _deliver_one(self, token: int, delivery: Delivery) -> None:
        text = delivery.inline or await self._reply_text(delivery)
        if not await self.gateway.run(self.store.holds, token):
            raise LeaseLost(self.spec.name)
        for part in split_reply(text, self.sender.limit) or ["(empty reply)"]:
            await self.sender.send(delivery.chat, delivery.thread, part)
        if not await self.gateway.run(
            self.store.delivered, token, delivery.message_id, self.settings.processed_retention
        ):
            raise LeaseLost(self.spec.name)

    async def _reply_text(self, delivery: Delivery) -> str:
        """Wait for a delivery's reply: the reply list, else the stored reply (a takeover)."""
        while True:
            raw = await self.gateway.pop_reply(delivery.session_key, delivery.message_id)
            if raw is None:
                raw = await self.gateway.wait_reply(
                    delivery.session_key, delivery.message_id, max(1.0, self.ttl)
                )
            if raw is not None:
                if raw.get("ok"):
                    return str(raw.get("text") or "")
                log.warning(
                    "%s bot %r: message %s failed: %s",
                    self.spec.platform,
                    self.spec.name,
                    delivery.message_id,
                    raw.get("error"),
                )
                return FAILED_TEXT


def retry_delay(seconds: float | None) -> float:
    """A platform's ``retry_after`` as a wait: at least 0.05 s, at most 60 s."""
    if seconds is None or not math.isfinite(seconds):
        return 1.0
    return min(60.0, max(0.05, seconds))
