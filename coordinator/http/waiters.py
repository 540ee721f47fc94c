"""Every caller a gateway process holds waiting, woken through one subscriber connection.

A caller waiting for a turn's reply or for its next stream events used to
hold one Redis connection of its own (``BLPOP``, ``XREAD BLOCK``), and then
a poller that checked every waiting reply list on a backoff schedule: work
in proportion to the callers held, every round. :class:`Waiters` keeps the
waits in memory and is woken by Redis instead:

* whatever delivers a reply (``session_commit.lua``, ``session_reset.lua``,
  :meth:`cluster.replies.ReplyChannel.push`) or appends a turn event
  (:mod:`worker.streaming`) also ``PUBLISH``\\es on the channel named like
  the reply list or stream it wrote (:meth:`cluster.keys.Keyspace.wake_channel`);
* the gateway's one subscriber connection (:mod:`coordinator.http.wake_signals`)
  is subscribed to the channels of exactly the lists and streams its callers
  wait on, so a signal reaches the gateway holding that caller, whichever
  gateway accepted the message;
* on a signal (or on the confirmation of a new subscription, which covers a
  reply written before it) one task pops the signalled reply lists with
  pipelined ``LPOP`` and reads the signalled streams with ``XREAD``, and
  wakes exactly their callers (a woken caller runs on its own task: the
  wait is a deadline the wake brings forward, :meth:`Waiters.wait`). Idle
  callers cost no Redis command between sweeps.

The reply lists and streams stay the truth; a signal only wakes. A slow
sweep (every ``gateway_sweep_interval`` seconds, and at once after a Redis
error or a lost subscriber connection) checks every waiting caller anyway
(one ``EXISTS`` per :data:`BATCH` reply lists, one ``XREAD`` per
:data:`BATCH` streams), so a signal lost to a Redis restart or a failover
delays a reply by at most one sweep, never loses it.

Callers are admitted by :meth:`Waiters.admit` up to ``gateway_max_waiting``;
past it :class:`~cluster.errors.GatewayFull` is raised (503 with
``Retry-After``), before anything is accepted. Once no caller was admitted
for a second after some were, the serving task gives the kernel back the
memory glibc's malloc holds free
(:func:`~cluster.glibc_malloc.return_free_memory`): what a burst
of arrivals freed would otherwise stay in the process' RSS while its
callers wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import redis
import redis.asyncio as aioredis

from cluster.durability import NO_DURABILITY, Durability
from cluster.errors import GatewayFull
from cluster.glibc_malloc import return_free_memory
from cluster.redis_text import text
from coordinator.http.stopping import stop_task
from coordinator.http.wake_signals import WakeSignals

__all__ = ["BATCH", "FULL_RETRY_AFTER", "Hold", "Wait", "Waiters"]

log = logging.getLogger("coordinator.http.waiters")

BATCH = 100
"""Most reply lists one pipeline pops or one ``EXISTS`` checks, and most streams one ``XREAD``
reads: the callers one read wakes run before the next read's reply is parsed, so a newcomer's
request waits behind at most this many of them."""

FULL_RETRY_AFTER = 5
"""``Retry-After`` of a full gateway, seconds."""

# Most entries of one stream one XREAD returns (a longer backlog takes more reads).
_STREAM_COUNT = 256
# Pause of the serving task after a Redis error before it tries again.
_ERROR_PAUSE = 0.5
# Seconds without a new caller after which the memory their arrival freed is given back.
_ARRIVALS_QUIET = 1.0
# Streams signalled within this many seconds of the last read are read together (a
# streaming turn signals every event; the worker sends them every 20 ms at most).
_STREAM_COALESCE = 0.02

Entry = tuple[bytes, dict[Any, Any]]


def _entry_id(value: bytes | str) -> tuple[int, int]:
    raw = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _batches(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


class Hold:
    """A waiting caller's place in the gateway; :meth:`release` gives it back (once)."""

    __slots__ = ("_waiters", "released")

    def __init__(self, waiters: Waiters) -> None:
        self._waiters = waiters
        self.released = False

    def release(self) -> None:
        """Give the place back (a second call does nothing)."""
        if not self.released:
            self.released = True
            self._waiters.leave()


class Wait:
    """One caller's wait: a reply list and, for a streaming caller, its turn's event stream.

    The serving task puts what it read here (:meth:`take_reply`,
    :meth:`take_entries` hand it over) and wakes the caller's
    :meth:`Waiters.wait`, which runs on the caller's own task: a wait costs
    this object and one timer, no task of its own.
    """

    __slots__ = (
        "after",
        "closed",
        "entries",
        "expiring",
        "failover",
        "reply",
        "reply_key",
        "stream_key",
        "task",
        "timer",
    )

    def __init__(self, reply_key: str, stream_key: str | None, after: tuple[int, int]) -> None:
        self.reply_key = reply_key
        self.stream_key = stream_key
        self.after = after
        self.reply: bytes | None = None
        self.entries: list[Entry] = []
        # While the caller waits: its task, and the timer of its deadline (a wake ends the
        # wait before it by cancelling the task, as asyncio.timeout would at the deadline).
        self.task: asyncio.Task[Any] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.expiring = False
        self.closed = False
        self.failover = False

    @property
    def ready(self) -> bool:
        """Whether a reply or stream entries are here for the caller."""
        return self.reply is not None or bool(self.entries)

    def take_reply(self) -> bytes | None:
        """The popped reply (once), or ``None``."""
        reply, self.reply = self.reply, None
        return reply

    def take_entries(self) -> list[Entry]:
        """The stream entries read since the last call, oldest first."""
        entries, self.entries = self.entries, []
        return entries

    def wake(self) -> None:
        """Wake the caller's :meth:`Waiters.wait`, if it waits."""
        if self.task is not None and not self.expiring:
            if self.timer is not None:
                self.timer.cancel()
            _expire(self)  # the caller's task resumes on the next loop turn

    def end(self) -> None:
        """End the wait (its caller went away): :meth:`Waiters.wait` returns at once."""
        self.closed = True
        self.wake()

    def failed_over(self) -> None:
        """Redis failed over while the caller waited: wake it to check its message is known."""
        self.failover = True
        self.wake()


def _expire(wait: Wait) -> None:
    """End ``wait``: its deadline came, or :meth:`Wait.wake` brought it forward."""
    wait.timer = None
    if wait.task is not None and not wait.expiring:
        wait.expiring = True
        wait.task.cancel()


class Waiters:
    """All the waiting callers of one gateway process (one instance per :class:`Gateway`)."""

    def __init__(
        self,
        *,
        client: aioredis.Redis,
        max_waiting: int,
        sweep_interval: float,
        reply_ttl: float,
        clock: Callable[[], float] = time.monotonic,
        durability: Durability = NO_DURABILITY,
    ) -> None:
        """Bind to the gateway's asyncio client (its bounded pool serves the subscriber too).

        Args:
            client: The asyncio Redis client (``decode_responses=False``).
            max_waiting: Most callers held waiting at once.
            sweep_interval: Seconds between two checks of every waiting
                caller's reply list and stream (for signals Redis lost).
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
        self._sweep_interval = sweep_interval
        self._reply_ttl_ms = max(1, math.ceil(reply_ttl * 1000))
        self._clock = clock
        self._replies: dict[str, list[Wait]] = {}
        self._streams: dict[str, list[Wait]] = {}
        self._due_replies: set[str] = set()
        self._swept_replies: set[str] = set()
        self._due_streams: set[str] = set()
        self._orphans: list[tuple[str, bytes]] = []
        self._next_sweep = math.inf
        self._streams_read_at = -math.inf
        self._arrived_at = -math.inf
        self._memory_returned_at = -math.inf
        self._wakeup: asyncio.Future[None] | None = None
        self._room: asyncio.Event | None = None
        self._checked: set[Wait] = set()
        self._signals = WakeSignals(client, on_signal=self._signalled, on_lost=self._sweep_soon)
        self._task: asyncio.Task[None] | None = None

    # -- admission ------------------------------------------------------------------

    def admit(self) -> Hold:
        """Take a waiting caller's place.

        Raises:
            GatewayFull: the gateway holds ``max_waiting`` callers already.
        """
        if self.waiting >= self.max_waiting:
            raise GatewayFull(
                f"this gateway is full: it holds {self.waiting} waiting callers, its limit "
                f"(gateway_max_waiting); nothing was accepted: retry in {FULL_RETRY_AFTER}s "
                "or send to another gateway",
                retry_after=FULL_RETRY_AFTER,
            )
        self.waiting += 1
        self._arrived_at = self._clock()
        return Hold(self)

    async def admit_when_room(self) -> Hold:
        """Take a waiting caller's place, waiting for one while the gateway is full.

        For callers that cannot be told to come back later (a chat bot's
        delivery): they count against ``gateway_max_waiting`` like any other.
        """
        while True:
            try:
                return self.admit()
            except GatewayFull:
                if self._room is None:
                    self._room = asyncio.Event()
                self._room.clear()
                await self._room.wait()

    def leave(self) -> None:
        """A caller gave its place back (:meth:`Hold.release`)."""
        self.waiting -= 1
        if self._room is not None:
            self._room.set()

    # -- waits ----------------------------------------------------------------------

    def watch(self, reply_key: str, stream_key: str | None = None, after: str = "0-0") -> Wait:
        """Wait on a reply list (and a stream after entry ``after``); :meth:`unwatch` when done."""
        self._start()
        wait = Wait(reply_key, stream_key, _entry_id(after))
        self._add(self._replies, self._due_replies, reply_key, wait)
        if stream_key is not None:
            self._add(self._streams, self._due_streams, stream_key, wait)
        return wait

    def unwatch(self, wait: Wait) -> None:
        """Stop waiting (a reply popped for it and not taken goes back to its list)."""
        wait.closed = True
        self._drop(self._replies, wait.reply_key, wait)
        if wait.stream_key is not None:
            self._drop(self._streams, wait.stream_key, wait)
        reply = wait.take_reply()
        if reply is not None:
            self._orphans.append((wait.reply_key, reply))
            self._kick()

    async def wait(
        self,
        wait: Wait,
        timeout: float,
        *,
        until: Callable[[], Awaitable[None]] | None = None,
    ) -> bool:
        """Return when the wait has a reply or entries, or ended, or after ``timeout`` seconds.

        Args:
            wait: The wait (from :meth:`watch`).
            timeout: Seconds to wait at most.
            until: Awaited on the caller's own task meanwhile (for an HTTP
                caller: reading its connection until it closes); when it
                returns, so does the wait, with ``True``.

        Returns:
            Whether ``until`` returned (the caller went away).
        """
        if wait.ready or wait.closed or wait.failover or timeout <= 0:
            return False
        # asyncio.timeout's way, without its object: at the deadline, or at Wait.wake, the
        # caller's task is cancelled, and that cancellation (only that one) ends the wait.
        # No task, no future of ours per wait.
        task = asyncio.current_task()
        assert task is not None, "Waiters.wait runs in a task"
        loop = asyncio.get_running_loop()
        cancelling = task.cancelling()
        wait.task = task
        wait.timer = loop.call_later(timeout, _expire, wait)
        try:
            if until is None:
                await loop.create_future()
            else:
                await until()
                return True
        except asyncio.CancelledError:
            if not wait.expiring or task.uncancel() > cancelling:
                raise  # the task was cancelled by someone else too
        finally:
            if wait.timer is not None:
                wait.timer.cancel()
            wait.task = wait.timer = None
            wait.expiring = False
        return False

    async def reply(
        self,
        key: str,
        timeout: float,
        *,
        gone: Callable[[], Awaitable[None]] | None = None,
        check: Callable[[], Awaitable[None]] | None = None,
    ) -> bytes | None:
        """Pop the reply list ``key``, waiting up to ``timeout`` seconds (``None``: none came).

        Args:
            key: The reply list.
            timeout: Seconds to wait at most.
            gone: Returns when the caller went away (its connection closed):
                the wait ends then, giving the caller's place back at once,
                and the reply stays in its list for a retry. It runs on the
                caller's own task.
            check: Awaited after each failover :meth:`failed_over` reports
                (the gateway's look for a message the failover lost); what it
                raises ends the wait.
        """
        wait = self.watch(key)
        if check is not None:
            self._checked.add(wait)
        deadline = self._clock() + timeout
        try:
            while True:
                if await self.wait(wait, deadline - self._clock(), until=gone):
                    return None
                if wait.failover and not wait.ready:
                    wait.failover = False
                    if check is not None:
                        await check()
                    continue
                return wait.take_reply()
        finally:
            self._checked.discard(wait)
            self.unwatch(wait)

    @property
    def checked(self) -> int:
        """How many reply waits look for a failover that lost their message."""
        return len(self._checked)

    def failed_over(self) -> None:
        """Redis failed over: every reply wait with a check runs it once."""
        for wait in self._checked:
            wait.failed_over()

    def _add(self, table: dict[str, list[Wait]], due: set[str], key: str, wait: Wait) -> None:
        group = table.get(key)
        if group is None:
            table[key] = [wait]
        else:
            group.append(wait)
        if self._signals.subscribe(key):
            due.add(key)  # already subscribed: its confirmation will not come again
        self._kick()

    def _drop(self, table: dict[str, list[Wait]], key: str, wait: Wait) -> None:
        group = table.get(key)
        if group is None:
            return
        with contextlib.suppress(ValueError):
            group.remove(wait)
        if not group:
            del table[key]
            self._signals.unsubscribe(key)

    # -- the serving task -----------------------------------------------------------

    def _start(self) -> None:
        if self._task is None:
            self._next_sweep = self._clock() + self._sweep_interval
            self._signals.start()
            self._task = asyncio.create_task(self._serve(), name="gateway-waiters")

    def _kick(self) -> None:
        if self._wakeup is not None:
            _resolve(self._wakeup)

    def _signalled(self, channel: str) -> None:
        if channel in self._replies:
            self._due_replies.add(channel)
        elif channel in self._streams:
            self._due_streams.add(channel)
        else:
            return
        self._kick()

    def _sweep_soon(self) -> None:
        """Check every waiting caller at once (signals may have been lost)."""
        self._next_sweep = self._clock()
        self._kick()

    async def close(self) -> None:
        """Stop serving (waits in progress end as timeouts of their callers)."""
        if self._task is not None:
            await stop_task(self._task)
            self._task = None
        await self._signals.close()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = self._clock()
            if now >= self._next_sweep:
                self._swept_replies.update(self._replies)
                self._due_streams.update(self._streams)
                self._next_sweep = now + self._sweep_interval
            try:
                await self._signals.flush()
                await self._push_back_orphans()
                await self._find_swept_replies()
                await self._pop_replies()
                if self._due_streams and now - self._streams_read_at >= _STREAM_COALESCE:
                    self._streams_read_at = now
                    await self._read_streams()
            except (redis.RedisError, OSError) as exc:
                log.warning("waiters: Redis error (%s); every wait is checked again", exc)
                await asyncio.sleep(_ERROR_PAUSE)
                self._sweep_soon()
                continue
            except Exception:  # a bug must not silence every waiting caller: log, go on
                log.exception("waiters: unexpected error; every wait is checked again")
                await asyncio.sleep(_ERROR_PAUSE)
                self._sweep_soon()
                continue
            if self._due_replies or self._orphans or self._signals.pending:
                continue
            now = self._clock()
            pause = self._next_sweep - now
            if self._arrived_at > self._memory_returned_at:
                if now - self._arrived_at >= _ARRIVALS_QUIET:
                    self._memory_returned_at = now
                    return_free_memory()
                else:
                    pause = min(pause, self._arrived_at + _ARRIVALS_QUIET - now)
            if self._due_streams:
                pause = min(pause, self._streams_read_at + _STREAM_COALESCE - now)
            self._wakeup = loop.create_future()
            timer = loop.call_later(max(0.0, pause), _resolve, self._wakeup)
            try:
                await self._wakeup
            finally:
                timer.cancel()
                self._wakeup = None

    async def _push_back_orphans(self) -> None:
        """Put back replies popped for callers that left meanwhile (answered once, never lost)."""
        if not self._orphans:
            return
        orphans, self._orphans = self._orphans, []
        pipe = self._client.pipeline(transaction=False)
        for key, raw in orphans:
            pipe.lpush(key, raw)
            pipe.pexpire(key, self._reply_ttl_ms)
        try:
            await pipe.execute()
        except BaseException:
            self._orphans.extend(orphans)
            raise

    async def _find_swept_replies(self) -> None:
        """Of the reply lists the sweep checks, make due those that hold a reply.

        A reply list exists only while a reply is in it, so one ``EXISTS`` per
        :data:`BATCH` lists finds them: a sweep of ten thousand waiting callers
        costs a hundred commands, not ten thousand pops of empty lists.
        """
        keys = [key for key in self._swept_replies if key in self._replies]
        self._swept_replies.clear()
        for batch in _batches(keys):
            if await self._client.exists(*batch):
                self._due_replies.update(batch)

    async def _pop_replies(self) -> None:
        keys = [key for key in self._due_replies if key in self._replies]
        self._due_replies.clear()
        for batch in _batches(keys):
            chunk = await self._confirmed(batch)
            pipe = self._client.pipeline(transaction=False)
            for key in chunk:
                pipe.lpop(key)
            popped = await pipe.execute()
            for key, raw in zip(chunk, popped, strict=True):
                if raw is None:
                    continue
                wait = next((w for w in self._replies.get(key, ()) if w.reply is None), None)
                if wait is None:  # its caller left while the pop was under way
                    self._orphans.append((key, raw))
                else:
                    wait.reply = raw
                    wait.wake()

    async def _confirmed(self, keys: list[str]) -> list[str]:
        """The reply lists whose reply a replica has (all of them with durability ``none``).

        ``PEXPIRE`` refreshes the TTL of each reply list that holds a reply
        (a write, replicated after the commit that pushed the reply) and
        touches nothing where none waits; ``WAIT`` behind it on the same
        connection confirms the replica got that far. Nothing is popped
        before: an unconfirmed reply stays, and its list is checked again
        (``WAIT`` itself paused up to ``redis_durability_timeout``), so a
        failover may still lose it, and then the turn runs again and answers.
        """
        if self._durability.mode != "replica" or not keys:
            return keys
        if self._durability.unlearned:
            self._durability.learn(await self._client.role())
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.pexpire(key, self._reply_ttl_ms)
        self._durability.queue_wait(pipe)
        *found, acknowledged, role = await pipe.execute()
        if not self._durability.confirmed(acknowledged, role):
            self._due_replies.update(keys)
            return []
        return [key for key, hit in zip(keys, found, strict=True) if hit]

    async def _read_streams(self) -> None:
        keys = [key for key in self._due_streams if key in self._streams]
        self._due_streams.clear()
        for chunk in _batches(keys):
            # A stream's last waiter may have left while an earlier chunk was read.
            cursors = {
                key: "{}-{}".format(*min(w.after for w in group))
                for key in chunk
                if (group := self._streams.get(key))
            }
            if not cursors:
                continue
            result = cast(Any, await self._client.xread(cursors, count=_STREAM_COUNT))  # type: ignore[arg-type]
            for stream, entries in result or ():
                key = text(stream)
                if len(entries) >= _STREAM_COUNT:
                    self._due_streams.add(key)  # more may wait: read on next round
                for wait in self._streams.get(key, ()):
                    mine = [(i, f) for i, f in entries if _entry_id(i) > wait.after]
                    if mine:
                        wait.entries.extend(mine)
                        wait.after = _entry_id(mine[-1][0])
                        wait.wake()
