"""One HTTP client many agents share, whose single in-flight calls can still be cut.

A worker shares one SDK client (and so one ``httpx2`` connection pool and one
SSL context) per provider endpoint and key among all its agents: building
an ``OpenAI()`` or ``Anthropic()`` per agent loads the CA bundle into a new
SSL context every time (~21 ms, ~0.8 MB). Sharing it takes away the old way
to stop a stuck call (close the agent's own client), so each connection's
socket is tracked while a call reads or writes it: :meth:`Call.abort` shuts
down the socket the calling thread is blocked on, that call fails at once,
and every other call on the shared client goes on.

A call is the thread that makes it (the sync SDKs run the request on the
calling thread): :meth:`CallRegistry.call` marks the current thread's call
for the duration of one model request.
"""

from __future__ import annotations

import functools
import socket
import ssl
import threading
import typing
from collections.abc import Iterator
from contextlib import contextmanager

import httpcore2
import httpx2

__all__ = ["Call", "CallRegistry", "abortable_http_client"]

# Connecting must not take as long as a whole model reply may: a call stuck
# connecting cannot be aborted (there is no socket to shut down yet).
_CONNECT_TIMEOUT = 10.0
_KEEPALIVE = 128
_KEEPALIVE_EXPIRY = 30.0
_T = typing.TypeVar("_T")


class Call:
    """One model request on one thread; :meth:`abort` may come from any thread."""

    __slots__ = ("_lock", "_stream", "aborted")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stream: _TrackedStream | None = None
        self.aborted = False

    def abort(self) -> None:
        """Fail this call now: the socket it waits on is shut down (others are untouched)."""
        with self._lock:
            self.aborted = True
            stream = self._stream
        if stream is not None:
            stream.shut_down()

    def _enter(self, stream: _TrackedStream) -> None:
        with self._lock:
            if self.aborted:
                raise httpcore2.ReadError("model call aborted")
            self._stream = stream

    def _leave(self) -> None:
        with self._lock:
            self._stream = None


class CallRegistry:
    """Which call, if any, the current thread is making."""

    def __init__(self) -> None:
        self._local = threading.local()

    @contextmanager
    def call(self) -> Iterator[Call]:
        """Mark the current thread's model request; yields the handle to abort it."""
        made = Call()
        self._local.call = made
        try:
            yield made
        finally:
            self._local.call = None

    def current(self) -> Call | None:
        return typing.cast("Call | None", getattr(self._local, "call", None))


class _TrackedStream(httpcore2.NetworkStream):
    """A connection's stream that tells the current call which socket it blocks on."""

    def __init__(self, inner: httpcore2.NetworkStream, calls: CallRegistry) -> None:
        self._inner = inner
        self._calls = calls

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._blocking(self._inner.read, max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._blocking(self._inner.write, buffer, timeout)

    def _blocking(self, op: typing.Callable[..., _T], *args: typing.Any) -> _T:
        """Run a socket operation, known to the current thread's call while it blocks."""
        call = self._calls.current()
        if call is None:
            return op(*args)
        call._enter(self)
        try:
            return op(*args)
        finally:
            call._leave()

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: typing.Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.NetworkStream:
        return _TrackedStream(
            self._inner.start_tls(ssl_context, server_hostname, timeout), self._calls
        )

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)

    def shut_down(self) -> None:
        sock = self._inner.get_extra_info("socket")
        if sock is None:
            return
        try:
            sock.shutdown(
                socket.SHUT_RDWR
            )  # wakes the blocked reader; the pool drops the connection
        except OSError:
            pass  # already closed


class _TrackingBackend(httpcore2.NetworkBackend):
    def __init__(self, calls: CallRegistry) -> None:
        self._inner = httpcore2.SyncBackend()
        self._calls = calls

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore2.NetworkStream:
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _TrackedStream(stream, self._calls)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore2.NetworkStream:
        return _TrackedStream(
            self._inner.connect_unix_socket(path, timeout, socket_options), self._calls
        )

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """The process's one SSL context (loading the CA bundle costs ~20 ms and ~0.8 MB)."""
    return httpx2.create_ssl_context()


def abortable_http_client(timeout: float) -> tuple[httpx2.Client, CallRegistry]:
    """An ``httpx2`` client for a provider SDK whose calls can be aborted one by one.

    No cap on connections: the worker's concurrency bounds the calls in
    flight, and a capped pool would make the surplus wait for a connection.
    """
    calls = CallRegistry()
    ssl_context = _ssl_context()
    transport = httpx2.HTTPTransport(verify=ssl_context)
    # httpx2 takes no network backend, so its pool is replaced by one that tracks sockets.
    transport._pool = httpcore2.ConnectionPool(
        ssl_context=ssl_context,
        max_connections=None,
        max_keepalive_connections=_KEEPALIVE,
        keepalive_expiry=_KEEPALIVE_EXPIRY,
        network_backend=_TrackingBackend(calls),
    )
    client = httpx2.Client(
        transport=transport,
        timeout=httpx2.Timeout(timeout, connect=min(timeout, _CONNECT_TIMEOUT)),
        follow_redirects=True,
    )
    return client, calls
