"""What a waiting caller holds in the gateway: its own task and nothing that wakes on a timer.

The app is driven as ASGI in this process (fakeredis for Redis, the
wake-up signals through fakeredis' pub/sub); a client's connection is a
``receive`` that reports the disconnect when the test says so.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import fakeredis

from cluster.keys import Keyspace
from cluster.lost_messages import AfterFailover
from cluster.replies import ReplyChannel
from cluster.settings import ClusterSettings
from coordinator.http.app import build_app
from coordinator.http.auth import Credentials
from coordinator.http.context import HttpOptions
from coordinator.http.failover_watch import FailoverWatch, PrimaryWatch
from coordinator.http.gateway import Gateway
from coordinator.http.tenancy import session_key
from coordinator.http.waiters import Waiters
from coordinator.ingress import Coordinator

NAMESPACE = "t"
KEYS = Keyspace(NAMESPACE)


async def _settled(check: Callable[[], bool]) -> None:
    """Let the loop run until ``check`` holds, then a little more (loop turns, no sleeping)."""
    for _ in range(20_000):
        if check():
            for _ in range(200):
                await asyncio.sleep(0)
            return
        await asyncio.sleep(0)
    raise AssertionError("never got there")


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 20))


class _Client:
    """One HTTP client of the app: what it was sent, and a switch that closes its connection."""

    def __init__(self) -> None:
        self.status = 0
        self.body = b""
        self.closed = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.closed.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.body += message.get("body", b"")


def _gateway(server: fakeredis.FakeServer) -> Gateway:
    settings = ClusterSettings(namespace=NAMESPACE)
    sync = fakeredis.FakeRedis(server=server)
    return Gateway(
        settings=settings,
        coordinator=Coordinator(settings=settings, client=sync, blocking=sync),
        client=fakeredis.FakeAsyncRedis(server=server),
    )


def test_waiting_event_streams_hold_one_task_each_and_give_their_places_back_when_they_leave() -> (
    None
):
    async def scenario() -> None:
        server = fakeredis.FakeServer()
        worker = fakeredis.FakeRedis(server=server)
        gw = _gateway(server)
        app = build_app(
            gw.settings,
            options=HttpOptions(credentials=Credentials(anonymous=True)),
            gateway=gw,
        )
        streams = 40
        for i in range(streams):  # each turn started: it waits on the model now
            key = session_key("default", f"chat-{i}")
            event = {"type": "turn_start", "message_id": "m1"}
            worker.xadd(KEYS.turn_stream(key, "m1"), {"e": json.dumps(event)})
        clients = [_Client() for _ in range(streams)]

        def call(i: int, client: _Client) -> asyncio.Task[None]:
            return asyncio.create_task(
                app(
                    {
                        "type": "http",
                        "asgi": {"version": "3.0", "spec_version": "2.3"},
                        "http_version": "1.1",
                        "method": "GET",
                        "scheme": "http",
                        "path": f"/v1/sessions/chat-{i}/messages/m1/events",
                        "raw_path": f"/v1/sessions/chat-{i}/messages/m1/events".encode(),
                        "root_path": "",
                        "query_string": b"",
                        "headers": [(b"host", b"gateway")],
                        "client": ("127.0.0.1", 1000 + i),
                        "server": ("127.0.0.1", 8080),
                    },
                    client.receive,
                    client.send,
                )
            )

        calls = [call(0, clients[0])]
        await _settled(lambda: b"event: turn_start" in clients[0].body)
        one_waiting = len(asyncio.all_tasks())
        calls += [call(i, client) for i, client in enumerate(clients) if i]
        await _settled(lambda: all(b"event: turn_start" in c.body for c in clients))
        assert all(c.status == 200 for c in clients)
        assert gw.waiters.waiting == streams
        # Each more stream is one more task, its request's own: nothing listens for its
        # disconnect on the side.
        assert len(asyncio.all_tasks()) - one_waiting == streams - 1
        for client in clients:
            client.closed.set()  # every client goes away while its turn waits on the model
        await asyncio.wait_for(asyncio.gather(*calls), 5)
        assert gw.waiters.waiting == 0
        await gw.close()

    _run(scenario)


def test_reply_waits_whose_callers_may_leave_hold_no_task_of_their_own() -> None:
    async def scenario() -> None:
        server = fakeredis.FakeServer()
        worker = fakeredis.FakeRedis(server=server)
        waiters = Waiters(
            client=fakeredis.FakeAsyncRedis(server=server),
            max_waiting=100,
            sweep_interval=3600.0,
            reply_ttl=60.0,
        )
        hung_up = asyncio.Event()

        async def gone() -> None:
            await hung_up.wait()

        def call(i: int) -> asyncio.Task[bytes | None]:
            return asyncio.create_task(
                waiters.reply(KEYS.reply_list(f"chat-{i}", "m"), 60, gone=gone)
            )

        def subscribed(i: int) -> bool:
            channel = KEYS.wake_channel(KEYS.reply_list(f"chat-{i}", "m"))
            return dict(worker.pubsub_numsub(channel)).get(channel.encode(), 0) == 1

        callers = 30
        waiting = [call(0)]
        await _settled(lambda: subscribed(0))
        one_waiting = len(asyncio.all_tasks())
        waiting += [call(i) for i in range(1, callers)]
        await _settled(lambda: all(subscribed(i) for i in range(callers)))
        assert len(asyncio.all_tasks()) - one_waiting == callers - 1  # the callers' own only
        ReplyChannel(worker, KEYS, reply_ttl=60).push("chat-0", "m", {"ok": True, "text": "hi"})
        assert await waiting[0] is not None  # a reply still wakes its caller
        hung_up.set()  # the others go away: their waits end at once
        assert await asyncio.wait_for(asyncio.gather(*waiting[1:]), 5) == [None] * (callers - 1)
        await waiters.close()

    _run(scenario)


class _Primary(PrimaryWatch):
    """The primary's replication id, as the test sets it (no Redis)."""

    def __init__(self) -> None:
        self.replid = "first"
        self.reads = 0

    async def current(self) -> str:
        self.reads += 1
        return self.replid


def test_reply_waits_check_for_a_lost_message_after_a_failover_and_never_without_one() -> None:
    """At a failover each waiting caller checks at once, then once per recheck interval
    while the cluster settles (a message found once can still go), then no more."""

    async def scenario() -> None:
        server = fakeredis.FakeServer()
        worker = fakeredis.FakeRedis(server=server)
        waiters = Waiters(
            client=fakeredis.FakeAsyncRedis(server=server),
            max_waiting=100,
            sweep_interval=3600.0,
            reply_ttl=60.0,
        )
        primary = _Primary()
        now = [0.0]
        after = AfterFailover(window=30.0, every=5.0)
        watch = FailoverWatch(primary, waiters, interval=0.0, after=after, clock=lambda: now[0])
        watch.start()
        checks: Counter[int] = Counter()

        def counting(i: int) -> Callable[[], Awaitable[None]]:
            async def check() -> None:
                checks[i] += 1

            return check

        callers = 5
        waiting = [
            asyncio.create_task(
                waiters.reply(KEYS.reply_list(f"chat-{i}", "m"), 60, check=counting(i))
            )
            for i in range(callers)
        ]
        await _settled(lambda: primary.reads >= 100)  # the one watch looked again and again
        assert not checks  # the primary stayed: no caller was woken to check
        primary.replid = "promoted replica"  # a failover
        await _settled(lambda: len(checks) == callers)
        assert checks == Counter(dict.fromkeys(range(callers), 1))  # each checked once
        reads = primary.reads
        await _settled(lambda: primary.reads >= reads + 100)
        assert checks == Counter(dict.fromkeys(range(callers), 1))  # not again within 5 s
        now[0] = 5.0
        await _settled(lambda: sum(checks.values()) == 2 * callers)  # the recheck
        now[0] = 31.0  # past the 30 s window: no more rechecks
        reads = primary.reads
        await _settled(lambda: primary.reads >= reads + 100)
        assert checks == Counter(dict.fromkeys(range(callers), 2))
        replies = ReplyChannel(worker, KEYS, reply_ttl=60)
        for i in range(callers):
            replies.push(f"chat-{i}", "m", {"ok": True, "text": "still answered"})
        assert all(raw is not None for raw in await asyncio.gather(*waiting))
        await watch.close()
        await waiters.close()

    _run(scenario)
