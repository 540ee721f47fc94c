"""Every caller a gateway process holds waiting, served by two tasks on a few Redis connections.

A caller waiting for a turn's reply or for its next stream events used to
hold one Redis connection of its own (``BLPOP``, ``XREAD BLOCK``), so a few
hundred waiting callers exhausted the pool. :class:`Waiters` instead keeps
the waits in memory and serves them all from two tasks:

* the reply poller checks the reply lists of the waiting callers with
  pipelined, non-blocking ``LPOP`` in batches of :data:`BATCH`, each caller on
  its own backoff schedule (:mod:`coordinator.http.wait_schedule`: 10 ms at
  first, doubling up to ``gateway_reply_poll``), and wakes exactly the
  callers whose reply came;
* the stream reader reads the streams of all the waiting SSE callers with
  ``XREAD`` over up to :data:`BATCH` streams per call (blocking when one call
  covers them all) and hands each caller the entries after its cursor.

The reply lists and streams are the ones the worker writes today, so a
caller resumes on any gateway (by message id or ``Last-Event-ID``) and
nothing changes on the worker side. Both tasks outlive Redis outages: an
error pauses them briefly, and after one every waiting reply is checked at
once, so no caller waits past its own timeout because of a lost round.

Callers are admitted by :meth:`Waiters.admit` up to ``gateway_max_waiting``;
past it :class:`~cluster.errors.GatewayFull` is raised (503 with
``Retry-After``), before anything is accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import redis
import redis.asyncio as aioredis

from cluster.durability import NO_DURABILITY, Durability
from cluster.errors import GatewayFull
from coordinator.http.wait_schedule import WaitSchedule

__all__ = ["BATCH", "Hold", "ReplyWatch", "Waiters"]

log = logging.getLogger("coordinator.http.waiters")

T = TypeVar("T")
D = TypeVar("D")

BATCH = 500
"""Most reply lists one pipeline pops, and most streams one ``XREAD`` reads."""

# How long the stream reader blocks when one XREAD covers every stream, and its
# pause after a round that found nothing when it takes several calls.
_STREAM_BLOCK_MS = 200
_STREAM_IDLE = 0.05
# Pause of a task after a Redis error before it tries again.
_ERROR_PAUSE = 0.2
# Retry-After of a full gateway, seconds.
_FULL_RETRY_AFTER = 5


@dataclass(eq=False)
class ReplyWatch:
    """One caller's wait for the reply list ``key``; ``future`` gets the popped reply."""

    key: str
    future: asyncio.Future[bytes]


@dataclass(eq=False)
class _StreamWatch:
    key: str
    after: tuple[int, int]
    future: asyncio.Future[list[tuple[bytes, dict[Any, Any]]]]


@dataclass(eq=False)
class Hold:
    """A waiting caller's place in the gateway; :meth:`release` gives it back (once)."""

    waiters: Waiters
    released: bool = field(default=False)

    def release(self) -> None:
        """Give the place back (a second call does nothing)."""
        if not self.released:
            self.released = True
            self.waiters.waiting -= 1


def _entry_id(value: bytes | str) -> tuple[int, int]:
    raw = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


def _result_or(future: asyncio.Future[T], default: D) -> T | D:
    """The result of a future set just as its wait timed out (it must not be lost), else default."""
    if future.done() and not future.cancelled():
        return future.result()
    return default


class Waiters:
    """All the waiting callers of one gateway process (one instance per :class:`Gateway`)."""

    def __init__(
        self,
        *,
        client: aioredis.Redis,
        max_waiting: int,
        reply_poll: float,
        reply_ttl: float,
        clock: Callable[[], float] = time.monotonic,
        durability: Durability = NO_DURABILITY,
    ) -> None:
        """Bind to the gateway's asyncio client (its bounded pool serves both tasks).

        Args:
            client: The asyncio Redis client (``decode_responses=False``).
            max_waiting: Most callers held waiting at once.
            reply_poll: Longest pause between two checks of one reply list.
            reply_ttl: Seconds a reply pushed back (its caller left while it
                was being popped) stays for the caller's retry.
            clock: Monotonic seconds.
            durability: With ``replica``, a reply is popped for its caller only
                once a replica confirms it has it (:meth:`_confirmed`).
        """
        self._client = client
        self._durability = durability
        self.max_waiting = max_waiting
        self.waiting = 0
        self._reply_ttl_ms = max(1, math.ceil(reply_ttl * 1000))
        self._clock = clock
        self._replies: WaitSchedule[ReplyWatch] = WaitSchedule(cap=reply_poll)
        self._streams: dict[int, _StreamWatch] = {}
        self._reply_wake = asyncio.Event()
        self._stream_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def admit(self) -> Hold:
        """Take a waiting caller's place.

        Raises:
            GatewayFull: the gateway holds ``max_waiting`` callers already.
        """
        if self.waiting >= self.max_waiting:
            raise GatewayFull(
                f"this gateway is full: it holds {self.waiting} waiting callers, its limit "
                f"(gateway_max_waiting); nothing was accepted: retry in {_FULL_RETRY_AFTER}s "
                "or send to another gateway",
                retry_after=_FULL_RETRY_AFTER,
            )
        self.waiting += 1
        return Hold(self)

    def _start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._poll_replies(), name="gateway-reply-poller"),
                asyncio.create_task(self._read_streams(), name="gateway-stream-reader"),
            ]

    async def close(self) -> None:
        """Stop both tasks (waits in progress end as timeouts of their callers)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def watch_reply(self, key: str) -> ReplyWatch:
        """Start watching the reply list ``key``; pass the watch to :meth:`unwatch` when done."""
        self._start()
        watch = ReplyWatch(key, asyncio.get_running_loop().create_future())
        self._replies.add(watch, self._clock())
        self._reply_wake.set()
        return watch

    def unwatch(self, watch: ReplyWatch) -> None:
        """Stop watching (the reply came, or the caller stopped waiting)."""
        self._replies.remove(watch)

    async def reply(self, key: str, timeout: float) -> bytes | None:
        """Pop the reply list ``key``, waiting up to ``timeout`` seconds (``None``: none came)."""
        watch = self.watch_reply(key)
        try:
            return await asyncio.wait_for(asyncio.shield(watch.future), timeout)
        except TimeoutError:
            popped: bytes | None = _result_or(watch.future, None)
            return popped
        finally:
            self.unwatch(watch)
            if not watch.future.done():
                watch.future.cancel()

    async def stream(
        self, key: str, after: str, block: float
    ) -> list[tuple[bytes, dict[Any, Any]]]:
        """Entries of stream ``key`` after id ``after``, waiting up to ``block`` seconds."""
        self._start()
        watch = _StreamWatch(key, _entry_id(after), asyncio.get_running_loop().create_future())
        self._streams[id(watch)] = watch
        self._stream_wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(watch.future), block)
        except TimeoutError:
            return _result_or(watch.future, [])
        finally:
            self._streams.pop(id(watch), None)
            if not watch.future.done():
                watch.future.cancel()

    async def _poll_replies(self) -> None:
        recheck_all = False
        while True:
            now = self._clock()
            due = self._replies.all_items() if recheck_all else self._replies.due(now)
            try:
                for start in range(0, len(due), BATCH):
                    await self._pop_batch(due[start : start + BATCH])
                recheck_all = False
            except (redis.RedisError, OSError) as exc:
                log.warning("reply poller: Redis error (%s); every reply is rechecked after", exc)
                recheck_all = True
                await asyncio.sleep(_ERROR_PAUSE)
                continue
            next_due = self._replies.next_due()
            self._reply_wake.clear()
            pause = None if next_due is None else max(0.0, next_due - self._clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reply_wake.wait(), pause)

    async def _pop_batch(self, watches: list[ReplyWatch]) -> None:
        if self._durability.mode == "replica":
            watches = await self._confirmed(watches)
        pipe = self._client.pipeline(transaction=False)
        for watch in watches:
            pipe.lpop(watch.key)
        popped = await pipe.execute()
        orphans: list[tuple[str, bytes]] = []
        for watch, raw in zip(watches, popped, strict=True):
            if raw is None:
                continue
            self._replies.remove(watch)
            if watch.future.done():  # its caller left while the pop was under way
                orphans.append((watch.key, raw))
            else:
                watch.future.set_result(raw)
        if orphans:  # put them back for the caller's retry (answered once, never lost)
            back = self._client.pipeline(transaction=False)
            for key, raw in orphans:
                back.lpush(key, raw)
                back.pexpire(key, self._reply_ttl_ms)
            await back.execute()

    async def _confirmed(self, watches: list[ReplyWatch]) -> list[ReplyWatch]:
        """The watches whose reply a replica has (durability replica); the others wait on.

        ``PEXPIRE`` refreshes the TTL of each reply list that holds a reply
        (a write, replicated after the commit that pushed the reply) and
        touches nothing where none waits; ``WAIT`` behind it on the same
        connection confirms the replica got that far. Nothing is popped
        before: an unconfirmed reply stays for its caller's next round (a
        failover may still lose it, and then the turn runs again and answers).
        """
        pipe = self._client.pipeline(transaction=False)
        for watch in watches:
            pipe.pexpire(watch.key, self._reply_ttl_ms)
        self._durability.queue_wait(pipe)
        *found, acknowledged = await pipe.execute()
        if int(acknowledged) < 1:
            return []
        return [watch for watch, hit in zip(watches, found, strict=True) if hit]

    async def _read_streams(self) -> None:
        while True:
            watches = [w for w in self._streams.values() if not w.future.done()]
            if not watches:  # answered watches stay registered until their caller runs
                self._stream_wake.clear()
                await self._stream_wake.wait()
                continue
            chunks = [watches[i : i + BATCH] for i in range(0, len(watches), BATCH)]
            found = False
            try:
                for chunk in chunks:
                    block = _STREAM_BLOCK_MS if len(chunks) == 1 else None
                    found = await self._read_chunk(chunk, block) or found
            except (redis.RedisError, OSError) as exc:
                log.warning("stream reader: Redis error (%s); retrying", exc)
                await asyncio.sleep(_ERROR_PAUSE)
                continue
            if not found and len(chunks) > 1:
                await asyncio.sleep(_STREAM_IDLE)

    async def _read_chunk(self, chunk: list[_StreamWatch], block: int | None) -> bool:
        by_key: dict[str, list[_StreamWatch]] = {}
        for watch in chunk:
            if not watch.future.done():
                by_key.setdefault(watch.key, []).append(watch)
        if not by_key:
            return False
        cursors = {
            key: "{}-{}".format(*min(w.after for w in group)) for key, group in by_key.items()
        }
        result = cast(Any, await self._client.xread(cursors, count=256, block=block))  # type: ignore[arg-type]
        found = False
        for stream, entries in result or ():
            key = stream.decode() if isinstance(stream, bytes) else str(stream)
            for watch in by_key.get(key, ()):
                mine = [(i, f) for i, f in entries if _entry_id(i) > watch.after]
                if mine and not watch.future.done():
                    watch.future.set_result(mine)
                    found = True
        return found
