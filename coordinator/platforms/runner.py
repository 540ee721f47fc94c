"""One bot on one gateway: compete for the bot's lease; while holding it, poll and send replies.

Every gateway serving a bot runs a :class:`BotRunner` for it. Any gateway
accepts the bot's webhooks (:meth:`BotRunner.accept`: submit to the cluster
under the platform's message id, then record the delivery in the bot's
inbox, once). Exactly one of them, the holder of the bot's lease in Redis,
polls Telegram (when the bot polls) and sends every reply: it reads the inbox,
follows each delivery's turn (editing one message with the reply so far, at
most once per ``platform_edit_interval``; see :mod:`.streaming`) or waits for
its reply, sends the final text, one chat at a time in the platform's order
and paced per chat (``platform_chat_interval``), then records it as
delivered under its fencing token. When the holder dies its lease expires
(``platform_lease_ttl``) and another gateway takes over the inbox and the
offset; a holder that lost its lease stops polling and sending at its next
renewal or fenced write.
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
from cluster.stream_events import STREAM_ATTR
from coordinator.http.gateway import Gateway
from coordinator.platforms.admission import admit, release
from coordinator.platforms.pacing import ChatPacer, PreviewSchedule
from coordinator.platforms.sessions import ChatPlace, message_id_for, session_key_for
from coordinator.platforms.splitting import split_reply
from coordinator.platforms.store import BotStore, Delivery
from coordinator.platforms.streaming import follow_turn

__all__ = ["BotRunner", "Inbound", "LeaseLost", "Sender", "holder_id"]

log = logging.getLogger("coordinator.platforms")

_INBOX_SCAN = 0.1
FAILED_TEXT = "Sorry, this message could not be answered. Please send it again."
"""What a chat sees when its message's turn failed (the error itself stays in the logs)."""


def holder_id() -> str:
    """This process's name as a lease holder: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Sender(Protocol):
    """Sends and edits a chat's messages, waiting out the platform's rate limits (dropping none).

    Texts are Markdown; the sender formats them for its platform.
    """

    limit: int
    """The platform's longest message, in characters."""

    async def send(self, chat: str, thread: str, text: str) -> str:
        """Send ``text`` to ``chat`` (in ``thread`` when not empty); the new message's id."""
        ...

    async def edit(self, chat: str, message_id: str, text: str) -> None:
        """Replace the text of message ``message_id`` of ``chat``."""
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
        poll: Callable[[BotRunner, str], Coroutine[Any, Any, None]] | None = None,
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
        self.token: str | None = None
        self._chats_busy: set[tuple[str, str]] = set()
        self._pacer = ChatPacer(self.settings.platform_chat_interval)

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

        A new message counts against the bot's tenant's limits (requests per
        minute, turns in flight) first; past them nothing is accepted and the
        platform delivers it again: a webhook is answered 429, a poller keeps
        its offset and asks again after ``retry_after``.

        Raises:
            TenantLimited: the tenant is past a limit (nothing was accepted).
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
        if self.settings.platform_edit_interval > 0:
            attrs[STREAM_ATTR] = 1
        counted = False
        if not await self.gateway.run(self.store.known, message_id):
            counted = await admit(self.gateway, spec.tenant, session_key, message_id, inbound.text)
        try:
            handle = await self.gateway.submit(
                session_key,
                inbound.text,
                message_id=message_id,
                strategy=self.settings.platform_busy_strategy,
                attrs=attrs,
            )
        except BaseException:
            if counted:
                await release(self.gateway, spec.tenant, session_key, message_id)
            raise
        if counted and handle.status not in ("queued", "pending"):
            await release(self.gateway, spec.tenant, session_key, message_id)
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
            log.info(
                "%s bot %r: %s holds the lease (fence %s)",
                self.spec.platform,
                self.spec.name,
                self.holder,
                token,
            )
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

    async def _renew(self, token: str) -> None:
        while True:
            await anyio.sleep(self.ttl / 3)
            if not await self.gateway.run(self.store.extend, token, self.ttl):
                raise LeaseLost(self.spec.name)

    async def _deliver(self, token: str, group: anyio.abc.TaskGroup) -> None:
        while True:
            waiting = await self.gateway.run(self.store.waiting)
            for delivery in waiting:
                chat = (delivery.chat, delivery.thread)
                if chat not in self._chats_busy:
                    self._chats_busy.add(chat)
                    group.start_soon(self._deliver_chat, token, chat)
            await anyio.sleep(_INBOX_SCAN)

    async def _deliver_chat(self, token: str, chat: tuple[str, str]) -> None:
        """Send the replies of one chat (thread), oldest first, until none waits."""
        try:
            while True:
                waiting = [
                    d
                    for d in await self.gateway.run(self.store.waiting)
                    if (d.chat, d.thread) == chat
                ]
                if not waiting:
                    return
                # A delivery waits on its turn like an HTTP caller: it takes a place of
                # the gateway's gateway_max_waiting (waiting for one while it is full).
                async with self.gateway.waiting_place():
                    await self._deliver_one(token, waiting[0])
        finally:
            self._chats_busy.discard(chat)

    async def _paced(self, chat: str) -> None:
        await anyio.sleep(self._pacer.reserve(chat, time.monotonic()))

    async def _send(self, delivery: Delivery, text: str) -> str:
        await self._paced(delivery.chat)
        return await self.sender.send(delivery.chat, delivery.thread, text)

    async def _edit(self, delivery: Delivery, message_id: str, text: str) -> None:
        await self._paced(delivery.chat)
        await self.sender.edit(delivery.chat, message_id, text)

    async def _deliver_one(self, token: str, delivery: Delivery) -> None:
        """Send one delivery's reply (streamed into one edited message when enabled)."""
        interval = self.settings.platform_edit_interval
        schedule = PreviewSchedule(interval) if interval > 0 else None
        # A previous holder may have shown this reply while it streamed: finish that message.
        preview_id = await self.gateway.run(self.store.preview_of, delivery.message_id)
        if delivery.inline:
            text = delivery.inline
        elif schedule is None:
            text = await self._reply_text(delivery)
        else:

            async def show(preview: str) -> None:
                nonlocal preview_id
                if not await self.gateway.run(self.store.holds, token):
                    raise LeaseLost(self.spec.name)
                if preview_id:
                    await self._edit(delivery, preview_id, preview)
                    return
                preview_id = await self._send(delivery, preview)
                if not await self.gateway.run(
                    self.store.note_preview, token, delivery.message_id, preview_id
                ):
                    raise LeaseLost(self.spec.name)

            followed = await follow_turn(
                self.gateway,
                delivery.session_key,
                delivery.message_id,
                schedule=schedule,
                limit=self.sender.limit,
                show=show,
                timeout=self.settings.turn_timeout,
            )
            if followed.failed:
                self._log_failure(delivery, followed.error)
                text = FAILED_TEXT
            else:
                text = followed.text if followed.seen else await self._reply_text(delivery)
        if not await self.gateway.run(self.store.holds, token):
            raise LeaseLost(self.spec.name)
        parts = split_reply(text, self.sender.limit) or ["(empty reply)"]
        if preview_id:
            if schedule is None or parts[0] != schedule.shown:
                if schedule is not None:  # the final edit keeps the bounded rate too
                    await anyio.sleep(schedule.wait(time.monotonic()))
                await self._edit(delivery, preview_id, parts[0])
            parts = parts[1:]
        for part in parts:
            await self._send(delivery, part)
        if not await self.gateway.run(
            self.store.delivered, token, delivery.message_id, self.settings.processed_retention
        ):
            raise LeaseLost(self.spec.name)

    def _log_failure(self, delivery: Delivery, error: object) -> None:
        log.warning(
            "%s bot %r: message %s failed: %s",
            self.spec.platform,
            self.spec.name,
            delivery.message_id,
            error,
        )

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
                self._log_failure(delivery, raw.get("error"))
                return FAILED_TEXT


def retry_delay(seconds: float | None) -> float:
    """A platform's ``retry_after`` as a wait: at least 0.05 s, at most 60 s."""
    if seconds is None or not math.isfinite(seconds):
        return 1.0
    return min(60.0, max(0.05, seconds))
