"""uvicorn's HTTP/1.1 protocol with a bound on the time to receive a request head.

uvicorn times out an idle keep-alive connection, but not one that sends its
request line and headers slowly: a client trickling a header byte every few
seconds holds a connection (and a file descriptor) for as long as it likes,
and a few hundred such clients fill the gateway. :func:`head_timeout_protocol`
returns a subclass of uvicorn's h11 protocol that closes a connection when no
complete request head arrived within ``seconds`` of the connection opening or
of the previous response ending. A request whose head arrived is never cut
off by it: a long turn or an event stream runs as long as it needs.

The same protocol replaces each connection's two :class:`asyncio.Event`
objects (its request's ``message_event``, which the app's ``receive`` waits
on, and the write flow control's) with a slotted event that keeps its
waiters in a list made at the first wait: an :class:`asyncio.Event` has an
instance dict and a :class:`collections.deque` whose first 64-slot block
is allocated up front (about 0.7 KiB per event), and a caller waiting on
a slow model holds both events for as long as it waits. Waiting on one is
its future, without a coroutine frame around it.

It also gives the request's headers (``scope["headers"]``, which a waiting
caller's request keeps) one shared copy of each well-known header name
(:data:`_HEADER_NAMES`): uvicorn lowercases every name into a bytes object
of its own per request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["head_timeout_protocol"]

log = logging.getLogger("coordinator.http")


class _LeanEvent:
    """What uvicorn asks of its per-connection :class:`asyncio.Event` objects (``set``,
    ``clear``, ``wait``; ``is_set`` too), in two slots.

    ``wait`` returns the future itself (no coroutine frame around it); the
    futures are kept in a list made at the first wait, and ``set`` resolves
    them all and drops the list. A future cancelled meanwhile (its task
    ended) leaves the list at the next wait or set.
    """

    __slots__ = ("_is_set", "_waiters")

    def __init__(self, is_set: bool) -> None:
        self._is_set = is_set
        self._waiters: list[asyncio.Future[bool]] | None = None

    def is_set(self) -> bool:
        """Whether the event is set."""
        return self._is_set

    def set(self) -> None:
        """Set the event: every wait returns."""
        if not self._is_set:
            self._is_set = True
            waiters, self._waiters = self._waiters, None
            for future in waiters or ():
                if not future.done():
                    future.set_result(True)

    def clear(self) -> None:
        """Unset the event: waits wait again."""
        self._is_set = False

    def wait(self) -> asyncio.Future[bool]:
        """An awaitable that is ``True`` once the event is set (at once if it is)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._is_set:
            future.set_result(True)
        elif self._waiters is None:
            self._waiters = [future]
        else:
            self._waiters = [waiter for waiter in self._waiters if not waiter.done()]
            self._waiters.append(future)
        return future


# Header names clients commonly send (HTTP clients, browsers, proxies, the OpenAI SDKs),
# lowercased as uvicorn gives them: each request's headers use these objects.
_HEADER_NAMES = {
    name: name
    for name in (
        b"accept",
        b"accept-encoding",
        b"accept-language",
        b"authorization",
        b"cache-control",
        b"connection",
        b"content-length",
        b"content-type",
        b"host",
        b"last-event-id",
        b"openai-organization",
        b"openai-project",
        b"origin",
        b"referer",
        b"traceparent",
        b"user-agent",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-real-ip",
        b"x-request-id",
        b"x-stainless-arch",
        b"x-stainless-async",
        b"x-stainless-lang",
        b"x-stainless-os",
        b"x-stainless-package-version",
        b"x-stainless-read-timeout",
        b"x-stainless-retry-count",
        b"x-stainless-runtime",
        b"x-stainless-runtime-version",
    )
}


def _shared_names(headers: list[tuple[bytes, bytes]]) -> None:
    """Put the shared copy of each well-known name in ``headers`` (in place)."""
    for index, (name, value) in enumerate(headers):
        shared = _HEADER_NAMES.get(name)
        if shared is not None and shared is not name:
            headers[index] = (shared, value)


def _lean(event: asyncio.Event) -> asyncio.Event:
    """``event`` as a :class:`_LeanEvent` in the same state (only one nobody waits on yet).

    Typed as the event it replaces: uvicorn calls only the methods both have.
    """
    return _LeanEvent(event.is_set())  # type: ignore[return-value]


class _HeadTimeoutProtocol(H11Protocol):
    """H11Protocol that closes a connection whose request head takes too long."""

    head_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow._is_writable_event = _lean(self.flow._is_writable_event)
        self._await_head()

    def handle_events(self) -> None:
        super().handle_events()
        # A request cycle started by these events gets the lean event and the shared header
        # names before its task first runs (nothing waits on it or read its scope yet); one
        # from an earlier call has them already.
        cycle = self.cycle
        if cycle is not None and type(cycle.message_event) is asyncio.Event:
            cycle.message_event = _lean(cycle.message_event)
            _shared_names(self.headers)  # the list that is the scope's headers

    def on_response_complete(self) -> None:
        # Armed before the base class starts a pipelined request's cycle, so
        # that request counts as a head that arrived.
        self._await_head()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._stop_waiting()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_late, self.cycle)

    def _stop_waiting(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self, cycle_then: object) -> None:
        self._head_timer = None
        if self.cycle is cycle_then and not self.transport.is_closing():
            log.info(
                "closing a connection from %s: no complete request head within %gs",
                self.client[0] if self.client else "?",
                self.head_timeout,
            )
            self.transport.close()


def head_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """The protocol class for ``uvicorn.run(http=...)`` with a head timeout of ``seconds``."""
    return type("HeadTimeoutH11Protocol", (_HeadTimeoutProtocol,), {"head_timeout": seconds})
