"""Telegram in front of the cluster: webhook updates, the one long-poller, replies with retries.

Built on python-telegram-bot's :class:`telegram.Bot` (its types, calls and
errors; asynchronous on httpx, so it runs on the gateway's event loop),
pointed at ``telegram_api_url``. A webhook update is checked against the
bot's secret token and answered 200 once it is accepted (the turn runs on
the cluster); a polling bot is polled by the holder of its lease only, from
the offset stored in Redis under the lease's fencing token. Sends and edits
go out as ``parse_mode=HTML`` (:func:`~coordinator.platforms.formatting.telegram_html`;
as plain text if Telegram still cannot parse it) and wait out Telegram's
``429 retry_after`` and send again: a reply is never dropped.
"""

from __future__ import annotations

import logging
import time
import warnings
from datetime import timedelta
from typing import Any

import anyio
from telegram import Bot, Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, Conflict, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import HTTPXRequest

from cluster.errors import AgentClusterError, TenantLimited
from coordinator.platforms.formatting import telegram_html
from coordinator.platforms.runner import BotRunner, Inbound, LeaseLost, retry_delay
from coordinator.platforms.sessions import ChatPlace
from coordinator.platforms.splitting import TELEGRAM_LIMIT
from coordinator.platforms.store import BotStore

__all__ = ["TelegramSender", "inbound_from_update", "make_bot", "poll_updates"]

log = logging.getLogger("coordinator.platforms.telegram")

_LONGEST_POLL = 25.0
_POOL = 32


def make_bot(token: str, api_url: str) -> Bot:
    """A python-telegram-bot ``Bot`` for ``token`` at ``api_url``, its pool sized for many chats."""
    return Bot(
        token,
        base_url=api_url.rstrip("/") + "/bot",
        request=HTTPXRequest(connection_pool_size=_POOL, pool_timeout=30.0),
        get_updates_request=HTTPXRequest(connection_pool_size=2),
    )


def _retry_after(error: RetryAfter) -> float:
    with warnings.catch_warnings():  # the int-vs-timedelta migration warning of PTB 22
        warnings.simplefilter("ignore")
        value: Any = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _command(text: str) -> str:
    """``/stop@my_bot`` -> ``/stop`` (Telegram appends the bot's name in groups)."""
    head, sep, rest = text.partition(" ")
    if head.startswith("/") and "@" in head:
        head = head.split("@", 1)[0]
    return head + sep + rest


def inbound_from_update(update: Update) -> Inbound | None:
    """The chat message an update carries, or ``None`` for anything but a text message."""
    message: Message | None = update.message or update.edited_message
    if message is None or not message.text:
        return None
    chat = message.chat
    user = message.from_user
    thread = message.message_thread_id if message.is_topic_message else None
    return Inbound(
        delivery_id=str(update.update_id),
        seq=update.update_id,
        place=ChatPlace(
            chat=str(chat.id),
            user=str(user.id) if user is not None else "",
            group=chat.type != "private",
            thread=str(thread) if thread is not None else "",
        ),
        text=_command(message.text),
    )


class TelegramSender:
    """Sends replies with ``sendMessage`` and edits them with ``editMessageText``.

    Every 429 is waited out (``retry_after``) and the call made again.
    """

    limit = TELEGRAM_LIMIT

    def __init__(self, bot: Bot, store: BotStore, run: Any) -> None:
        self.bot = bot
        self._store = store
        self._run = run

    async def send(self, chat: str, thread: str, text: str) -> str:
        """Send ``text`` to ``chat`` (forum topic ``thread``), retrying until Telegram takes it."""
        sent: Message = await self._call(
            chat,
            lambda html: self.bot.send_message(
                chat_id=int(chat),
                text=text if html is None else html,
                parse_mode=None if html is None else ParseMode.HTML,
                message_thread_id=int(thread) if thread else None,
            ),
            text,
        )
        return str(sent.message_id)

    async def edit(self, chat: str, message_id: str, text: str) -> None:
        """Replace the text of ``message_id`` in ``chat``, retrying until Telegram takes it."""
        try:
            await self._call(
                chat,
                lambda html: self.bot.edit_message_text(
                    chat_id=int(chat),
                    message_id=int(message_id),
                    text=text if html is None else html,
                    parse_mode=None if html is None else ParseMode.HTML,
                ),
                text,
            )
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                raise

    async def _call(self, chat: str, call: Any, text: str) -> Any:
        html: str | None = telegram_html(text)
        while True:
            try:
                return await call(html)
            except RetryAfter as exc:
                await self._run(self._store.count, "rate_limited")
                await anyio.sleep(retry_delay(_retry_after(exc)))
            except BadRequest as exc:
                if html is None or "can't parse entities" not in str(exc).lower():
                    raise
                log.warning(
                    "telegram: chat %s refused the formatting (%s); sending plain text", chat, exc
                )
                html = None
            except (TimedOut, NetworkError) as exc:
                if isinstance(exc, RetryAfter | Conflict | BadRequest):
                    raise
                log.warning("telegram: call to chat %s failed (%s); retrying", chat, exc)
                await anyio.sleep(0.5)


async def poll_updates(runner: BotRunner, token: str) -> None:
    """Long-poll the bot's updates while holding its lease; confirm offsets under ``token``.

    Updates are accepted (submitted to the cluster and recorded in the inbox)
    before their offset is stored and confirmed to Telegram, so a poller
    that dies in between leaves them to be fetched again by the next holder,
    which the inbox then counts as duplicates.
    """
    sender = runner.sender
    assert isinstance(sender, TelegramSender)
    bot = sender.bot
    store = runner.store
    gw = runner.gateway
    timeout = max(1.0, min(_LONGEST_POLL, runner.ttl / 2))
    offset = await gw.run(store.offset)
    while True:
        try:
            updates = await bot.get_updates(
                offset=offset or None,
                timeout=int(timeout),
                read_timeout=timeout + 5,
                allowed_updates=["message", "edited_message"],
            )
        except RetryAfter as exc:
            await anyio.sleep(retry_delay(_retry_after(exc)))
            continue
        except Conflict:
            log.warning("telegram bot %r: another getUpdates is running (409)", runner.spec.name)
            await gw.run(store.count, "conflicts")
            await anyio.sleep(1.0)
            continue
        except TelegramError as exc:
            log.warning("telegram bot %r: getUpdates failed (%s)", runner.spec.name, exc)
            await anyio.sleep(0.5)
            continue
        await gw.run(store.mark, "polled_at", time.time())
        done = offset
        try:
            for update in updates:
                inbound = inbound_from_update(update)
                if inbound is not None:
                    await runner.accept(inbound)
                done = update.update_id + 1
        except TenantLimited as exc:  # the offset stays: this update is fetched again
            log.info("telegram bot %r: %s", runner.spec.name, exc)
            await gw.run(store.count, "tenant_limited")
            await anyio.sleep(retry_delay(exc.retry_after))
        except AgentClusterError as exc:  # no worker, Redis down: fetch them again later
            log.warning(
                "telegram bot %r: update not accepted (%s); retrying", runner.spec.name, exc
            )
            await anyio.sleep(0.5)
        if done != offset:
            offset = done
            if not await gw.run(store.confirm_offset, token, offset):
                raise LeaseLost(runner.spec.name)
