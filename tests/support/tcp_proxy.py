"""A TCP proxy on a loopback port that a test can cut: pass, stall or drop connections.

A process that connects to Redis through a :class:`TcpProxy` sees what a
network fault between it and Redis looks like from the inside:

* :meth:`TcpProxy.stall`: bytes stop flowing both ways on every connection,
  open or new (a black hole: requests are sent, no answer comes back); the
  client's socket timeout is what notices. :meth:`TcpProxy.restore` lets the
  held bytes through, in order.
* :meth:`TcpProxy.drop`: every open connection is reset (RST) and every new
  one is reset as soon as it is accepted, until :meth:`TcpProxy.restore`.

The upstream address is asked of ``target`` at each new connection, so a
proxy whose ``target`` follows the current primary (asked of the Sentinels)
behaves like a managed Redis endpoint whose DNS name moves at a failover.

One thread accepts; each connection has two pump threads (one per
direction), all joined by :meth:`TcpProxy.close`.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType

__all__ = ["TcpProxy"]

Address = tuple[str, int]
_CHUNK = 65536
_CONNECT_TIMEOUT = 2.0
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class _Pair:
    """One client connection and its upstream connection."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.closed = False
        self._lock = threading.Lock()

    def close(self, *, reset: bool) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            try:
                if reset:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its peer
            sock.close()


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``target``; :meth:`stall`, :meth:`drop`, :meth:`restore`.

    Args:
        target: The upstream ``(host, port)``, or a callable returning it, asked
            at each new connection (a callable that raises refuses the connection).
        host: The loopback address to listen on.
    """

    def __init__(self, target: Address | Callable[[], Address], *, host: str = "127.0.0.1") -> None:
        self._target = target if callable(target) else (lambda: target)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(128)
        self._listener.settimeout(0.1)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self.mode = "pass"
        self.connections_made = 0
        self._flowing = threading.Event()
        self._flowing.set()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"proxy-{self.port}")
        self._acceptor.start()

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    # -- faults -----------------------------------------------------------------

    def stall(self) -> None:
        """Stop forwarding: open and new connections stay up, no byte goes through."""
        with self._lock:
            self.mode = "stall"
            self._flowing.clear()

    def drop(self) -> None:
        """Reset every open connection and every new one until :meth:`restore`."""
        with self._lock:
            self.mode = "drop"
            pairs = list(self._pairs)
            self._pairs.clear()
        for pair in pairs:
            pair.close(reset=True)
        self._flowing.set()  # wake pumps held by an earlier stall: their pair is closed

    def restore(self) -> None:
        """Forward again (bytes held by a stall go through, in order)."""
        with self._lock:
            self.mode = "pass"
            self._flowing.set()

    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    # -- lifecycle --------------------------------------------------------------

    def close(self) -> None:
        """Stop listening, close every connection and join every thread."""
        self._closing.set()
        self.drop()
        self._acceptor.join(10)
        self._listener.close()
        for thread in list(self._threads):
            thread.join(10)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the threads ------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            pair = _Pair(client)
            with self._lock:
                refuse = self.mode == "drop" or self._closing.is_set()
                if not refuse:
                    self._pairs.add(pair)
                    self.connections_made += 1
            if refuse:
                pair.close(reset=True)
                continue
            self._spawn(self._serve, pair, name=f"proxy-{self.port}-conn")

    def _spawn(self, run: Callable[..., None], *args: object, name: str) -> None:
        thread = threading.Thread(target=run, args=args, name=name)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _serve(self, pair: _Pair) -> None:
        self._flowing.wait()  # a stalled network does not even reach the server
        if pair.closed:
            return
        try:
            upstream = socket.create_connection(self._target(), timeout=_CONNECT_TIMEOUT)
        except Exception:  # refused, or the target could not be resolved: reset the client
            self._forget(pair)
            pair.close(reset=True)
            return
        upstream.settimeout(None)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair.upstream = upstream
        if pair.closed:  # dropped while connecting
            upstream.close()
            return
        self._spawn(self._pump, pair, upstream, pair.client, name=f"proxy-{self.port}-down")
        self._pump(pair, pair.client, upstream)

    def _pump(self, pair: _Pair, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                self._flowing.wait()
                if pair.closed:
                    break
                sink.sendall(data)
        except OSError:
            pass  # the pair was reset, or a peer went away
        self._forget(pair)
        pair.close(reset=False)

    def _forget(self, pair: _Pair) -> None:
        with self._lock:
            self._pairs.discard(pair)
