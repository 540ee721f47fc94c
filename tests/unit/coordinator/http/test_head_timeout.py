"""The head timeout: a slow request head is cut off, a slow answer is not.

A real uvicorn server on a loopback port runs the protocol of
:func:`head_timeout_protocol` (0.5 s) in front of a tiny ASGI app; the
clients are raw sockets, so they can send a head as slowly as they like.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.types import Receive, Scope, Send

from coordinator.http.head_timeout import head_timeout_protocol

HEAD_TIMEOUT = 0.5
SLOW_ANSWER = 1.5  # longer than the head timeout: the answer must still come


SEEN: list[list[tuple[bytes, bytes]]] = []  # the headers of each request /seen got


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/seen":
        SEEN.append(list(scope["headers"]))
    if scope["path"] == "/slow":
        await asyncio.sleep(SLOW_ANSWER)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@asynccontextmanager
async def _server() -> AsyncIterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = uvicorn.Config(
        _app,
        host="127.0.0.1",
        port=port,
        http=head_timeout_protocol(HEAD_TIMEOUT),
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def _closed_after(reader: asyncio.StreamReader, limit: float) -> float:
    """Seconds until the server closed the connection (reading everything it sent)."""
    start = time.monotonic()
    while await asyncio.wait_for(reader.read(1024), limit):
        pass
    return time.monotonic() - start


def _request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


def test_a_head_that_trickles_in_is_cut_off() -> None:
    async def main() -> None:
        async with _server() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            start = time.monotonic()
            closed = asyncio.create_task(_closed_after(reader, 5))
            trickle = _request("/")[:-2]  # never the blank line that ends the head
            for byte in trickle:  # a byte every 0.1 s: 2.6 s if nobody stops it
                if closed.done():
                    break
                try:
                    writer.write(bytes([byte]))
                except OSError:
                    break
                await asyncio.sleep(0.1)
            await closed
            assert HEAD_TIMEOUT <= time.monotonic() - start < HEAD_TIMEOUT + 1.0
            writer.close()
            await writer.wait_closed()

    asyncio.run(main())


def test_a_slow_answer_is_not_cut_off_and_the_next_head_is_awaited_again() -> None:
    async def main() -> None:
        async with _server() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_request("/slow"))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), SLOW_ANSWER + 5)
            assert head.startswith(b"HTTP/1.1 200")
            assert await reader.readexactly(2) == b"ok"
            # Kept alive; a partial next head is cut off a head timeout after the answer.
            writer.write(b"GET / HTTP/1.1\r\n")
            assert await _closed_after(reader, 5) < HEAD_TIMEOUT + 1.5
            writer.close()
            await writer.wait_closed()

    asyncio.run(main())


def test_pipelined_requests_are_all_answered() -> None:
    async def main() -> None:
        async with _server() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_request("/slow") + _request("/"))
            for _ in range(2):
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), SLOW_ANSWER + 5)
                assert head.startswith(b"HTTP/1.1 200")
                assert await reader.readexactly(2) == b"ok"
            writer.close()
            await writer.wait_closed()

    asyncio.run(main())


def test_the_protocols_lean_event_does_what_uvicorn_asks_of_an_event() -> None:
    from coordinator.http.head_timeout import _LeanEvent

    async def main() -> None:
        event = _LeanEvent(False)
        first = asyncio.ensure_future(event.wait())
        cancelled = asyncio.ensure_future(event.wait())
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0)
        assert not first.done()
        event.set()
        assert await asyncio.wait_for(first, 1) is True
        assert await event.wait() is True  # set: at once
        event.clear()
        assert not event.is_set()
        later = asyncio.ensure_future(event.wait())
        await asyncio.sleep(0.01)
        assert not later.done()
        event.set()
        assert await asyncio.wait_for(later, 1) is True

    asyncio.run(main())


def test_the_app_gets_every_header_lowercased_and_the_well_known_names_are_one_shared_copy() -> (
    None
):
    from coordinator.http.head_timeout import _HEADER_NAMES

    async def main() -> None:
        async with _server() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"GET /seen HTTP/1.1\r\nHost: t\r\nUser-Agent: probe/1\r\n"
                b"X-Custom-Thing: a, b\r\nACCEPT: */*\r\n\r\n"
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200")
            writer.close()
            await writer.wait_closed()

    SEEN.clear()
    asyncio.run(main())
    [headers] = SEEN
    assert headers == [
        (b"host", b"t"),
        (b"user-agent", b"probe/1"),
        (b"x-custom-thing", b"a, b"),
        (b"accept", b"*/*"),
    ]
    for name, _value in headers:
        assert (name in _HEADER_NAMES) == (name is _HEADER_NAMES.get(name))
