"""The gateway's waiting callers: woken by the workers' signals, swept for lost ones, admitted
up to the limit (fakeredis; the subscriber connection is fakeredis' pub/sub)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import fakeredis
import pytest
import redis

from cluster.errors import GatewayFull
from cluster.keys import Keyspace
from cluster.replies import ReplyChannel
from cluster.serialization import pack, unpack
from coordinator.http.waiters import Waiters

KEYS = Keyspace("t")
SLOW_SWEEP = 3600.0  # no sweep within a test: only a signal can wake a caller


def _pair() -> tuple[fakeredis.FakeAsyncRedis, redis.Redis]:
    server = fakeredis.FakeServer()
    return fakeredis.FakeAsyncRedis(server=server), fakeredis.FakeRedis(server=server)


def _waiters(client: fakeredis.FakeAsyncRedis, *, sweep: float = SLOW_SWEEP) -> Waiters:
    return Waiters(client=client, max_waiting=100, sweep_interval=sweep, reply_ttl=60.0)


async def _settled(check: Callable[[], bool]) -> None:
    """Let the waiters run until ``check`` holds, then a little more (loop turns, no sleeping)."""
    for _ in range(10_000):
        if check():
            for _ in range(200):
                await asyncio.sleep(0)
            return
        await asyncio.sleep(0)
    raise AssertionError("the waiters never got there")


def _listening(worker: redis.Redis, channel: str) -> Callable[[], bool]:
    return lambda: dict(worker.pubsub_numsub(channel)).get(channel.encode(), 0) == 1


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_waiting_caller_is_answered_by_the_workers_reply_signal_without_any_sweep() -> None:
    async def scenario() -> None:
        client, worker = _pair()
        waiters = _waiters(client)
        key = KEYS.reply_list("chat-1", "m1")
        waiting = asyncio.create_task(waiters.reply(key, timeout=30))
        await _settled(_listening(worker, key))
        assert not waiting.done()  # subscribed and checked: nothing there yet
        ReplyChannel(worker, KEYS, reply_ttl=60).push("chat-1", "m1", {"ok": True, "text": "hi"})
        raw = await waiting
        assert raw is not None and unpack(raw)["text"] == "hi"
        assert worker.llen(key) == 0  # popped once
        await waiters.close()

    _run(scenario)


def test_a_reply_written_before_the_caller_subscribed_is_found_at_once() -> None:
    async def scenario() -> None:
        client, worker = _pair()
        worker.rpush(KEYS.reply_list("chat-1", "m1"), pack({"ok": True, "text": "early"}))
        waiters = _waiters(client)
        raw = await waiters.reply(KEYS.reply_list("chat-1", "m1"), timeout=30)
        assert raw is not None and unpack(raw)["text"] == "early"
        await waiters.close()

    _run(scenario)


def test_a_lost_signal_is_made_up_for_by_the_sweep() -> None:
    async def scenario() -> None:
        client, worker = _pair()
        now = [0.0]
        waiters = Waiters(
            client=client,
            max_waiting=100,
            sweep_interval=5.0,
            reply_ttl=60.0,
            clock=lambda: now[0],
        )
        key = KEYS.reply_list("chat-1", "m1")
        waiting = asyncio.create_task(waiters.reply(key, timeout=30))
        await _settled(_listening(worker, key))
        worker.rpush(key, pack({"ok": True, "text": "unsignalled"}))  # no PUBLISH: lost
        await _settled(lambda: True)
        assert not waiting.done()
        now[0] = 5.0  # the sweep is due; the next caller's arrival wakes the serving task
        other = asyncio.create_task(waiters.reply(KEYS.reply_list("chat-2", "m2"), timeout=0.5))
        raw = await waiting
        assert raw is not None and unpack(raw)["text"] == "unsignalled"
        assert await other is None
        await waiters.close()

    _run(scenario)


def test_a_reply_popped_for_a_caller_that_left_goes_back_for_its_retry() -> None:
    async def scenario() -> None:
        client, worker = _pair()
        waiters = _waiters(client)
        key = KEYS.reply_list("chat-1", "m1")
        wait = waiters.watch(key)
        worker.rpush(key, pack({"ok": True, "text": "kept"}))
        await _settled(lambda: wait.ready)
        waiters.unwatch(wait)  # the caller left before taking it
        await _settled(lambda: worker.llen(key) == 1)
        raw = await waiters.reply(key, timeout=30)  # the retry, on any gateway
        assert raw is not None and unpack(raw)["text"] == "kept"
        await waiters.close()

    _run(scenario)


def test_a_streaming_caller_gets_only_the_events_after_its_cursor_each_once() -> None:
    async def scenario() -> None:
        client, worker = _pair()
        waiters = _waiters(client)
        reply_key = KEYS.reply_list("chat-1", "m1")
        stream = KEYS.turn_stream("chat-1", "m1")
        first = worker.xadd(stream, {"e": "one"})
        wait = waiters.watch(reply_key, stream, after=first.decode())
        pipe = worker.pipeline()
        pipe.xadd(stream, {"e": "two"})
        pipe.publish(KEYS.wake_channel(stream), b"")
        pipe.execute()
        await waiters.wait(wait, 5)
        assert [fields[b"e"] for _, fields in wait.take_entries()] == [b"two"]
        await _settled(_listening(worker, stream))
        worker.xadd(stream, {"e": "three"})
        worker.publish(KEYS.wake_channel(stream), b"")
        await waiters.wait(wait, 5)
        assert [fields[b"e"] for _, fields in wait.take_entries()] == [b"three"]
        waiters.unwatch(wait)
        await waiters.close()

    _run(scenario)


def test_past_its_limit_the_gateway_says_it_is_full_until_a_caller_leaves() -> None:
    waiters = Waiters(
        client=fakeredis.FakeAsyncRedis(), max_waiting=2, sweep_interval=5.0, reply_ttl=60.0
    )
    first = waiters.admit()
    waiters.admit()
    with pytest.raises(GatewayFull, match="gateway is full") as refused:
        waiters.admit()
    assert refused.value.retry_after > 0 and "Redis" not in str(refused.value)
    first.release()
    first.release()  # a second release gives nothing back twice
    assert waiters.waiting == 1
    waiters.admit()
    with pytest.raises(GatewayFull):
        waiters.admit()


def test_a_bots_delivery_counts_against_the_limit_and_waits_for_a_place_when_full() -> None:
    async def scenario() -> None:
        waiters = Waiters(
            client=fakeredis.FakeAsyncRedis(), max_waiting=1, sweep_interval=5.0, reply_ttl=60.0
        )
        http_caller = waiters.admit()
        bot = asyncio.create_task(waiters.admit_when_room())
        await asyncio.sleep(0)
        assert not bot.done()  # full: the bot's delivery waits, it is not refused
        http_caller.release()
        hold = await bot
        assert waiters.waiting == 1
        with pytest.raises(GatewayFull):
            waiters.admit()  # the bot's delivery holds the place now
        hold.release()

    _run(scenario)


def test_a_caller_that_goes_away_stops_waiting_at_once_and_its_reply_stays() -> None:
    async def scenario() -> None:
        client, worker = _pair()
        waiters = _waiters(client)
        key = KEYS.reply_list("chat-1", "m1")
        hung_up = asyncio.Event()

        async def gone() -> None:
            await hung_up.wait()

        waiting = asyncio.create_task(waiters.reply(key, timeout=3600, gone=gone))
        await _settled(_listening(worker, key))
        hung_up.set()  # the connection closed
        assert await waiting is None
        assert not waiters._replies  # nothing left waiting on it
        ReplyChannel(worker, KEYS, reply_ttl=60).push("chat-1", "m1", {"ok": True, "text": "late"})
        await _settled(lambda: True)
        assert worker.llen(key) == 1  # the reply stays for a retry
        await waiters.close()

    _run(scenario)


def test_streams_whose_callers_leave_while_others_are_read_do_not_stop_the_waiters() -> None:
    class LeavingWhileRead(fakeredis.FakeAsyncRedis):
        """Redis whose first XREAD lets every caller of the streams it does not read leave."""

        hook: Callable[[dict[str, str]], None] | None = None

        async def xread(self, streams: dict[str, str], *args: object, **kwargs: object) -> object:  # type: ignore[override]
            if self.hook is not None:
                hook, self.hook = self.hook, None
                hook(streams)
            return await super().xread(streams, *args, **kwargs)  # type: ignore[arg-type]

    async def scenario() -> None:
        server = fakeredis.FakeServer()
        client = LeavingWhileRead(server=server)
        worker = fakeredis.FakeRedis(server=server)
        waiters = _waiters(client)
        waits = {}
        for i in range(1200):  # more streams than one XREAD reads
            stream = KEYS.turn_stream(f"chat-{i}", "m")
            waits[stream] = waiters.watch(KEYS.reply_list(f"chat-{i}", "m"), stream)

        def leave(read: dict[str, str]) -> None:
            for stream, wait in list(waits.items()):
                if stream not in read:
                    waiters.unwatch(wait)
                    del waits[stream]

        client.hook = leave
        await _settled(lambda: client.hook is None and not waiters._due_streams)
        stream, wait = next(iter(waits.items()))
        worker.xadd(stream, {"e": "still served"})
        worker.publish(KEYS.wake_channel(stream), b"")
        await waiters.wait(wait, 5)
        assert [fields[b"e"] for _, fields in wait.take_entries()] == [b"still served"]
        await waiters.close()

    _run(scenario)


def test_the_memory_a_burst_of_arrivals_freed_is_given_back_once_they_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [0.0]
    given_back: list[float] = []
    monkeypatch.setattr(
        "coordinator.http.waiters.return_free_memory", lambda: given_back.append(now[0])
    )

    async def scenario() -> None:
        client, _worker = _pair()
        waiters = Waiters(
            client=client,
            max_waiting=100,
            sweep_interval=SLOW_SWEEP,
            reply_ttl=60.0,
            clock=lambda: now[0],
        )
        calls = iter(range(100))

        async def another_caller() -> None:  # its watch wakes the serving task
            waiters.watch(KEYS.reply_list(f"chat-{next(calls)}", "m"))
            await _settled(lambda: True)

        for _ in range(3):
            waiters.admit()
        await another_caller()
        now[0] = 0.9
        await another_caller()
        assert given_back == []  # arrivals have not paused for a second yet
        now[0] = 1.0
        await another_caller()
        assert given_back == [1.0]
        now[0] = 30.0
        await another_caller()
        assert given_back == [1.0]  # nobody arrived since: nothing more to give back
        waiters.admit()
        now[0] = 31.0
        await another_caller()
        assert given_back == [1.0, 31.0]
        await waiters.close()

    _run(scenario)


def test_a_wait_ends_at_a_wake_but_a_cancellation_from_outside_still_cancels_the_caller() -> None:
    async def scenario() -> None:
        client, _worker = _pair()
        waiters = _waiters(client)
        wait = waiters.watch(KEYS.reply_list("chat-1", "m1"))

        async def waiting() -> asyncio.Task[bool]:
            task = asyncio.create_task(waiters.wait(wait, 30))
            await _settled(lambda: True)
            assert not task.done()
            return task

        task = await waiting()
        wait.wake()
        assert await task is False  # woken: the wait returns, nobody is cancelled
        task = await waiting()
        task.cancel()  # the server shuts down, say
        with pytest.raises(asyncio.CancelledError):
            await task
        task = await waiting()
        wait.wake()
        task.cancel()  # both at once: the outside cancellation is not taken for the wake
        with pytest.raises(asyncio.CancelledError):
            await task
        task = await waiting()  # and nothing of the earlier waits is left to end this one
        await _settled(lambda: True)
        assert not task.done()
        wait.wake()
        assert await task is False
        waiters.unwatch(wait)
        await waiters.close()

    _run(scenario)
