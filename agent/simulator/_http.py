"""The simulator's HTTP layer: stdlib threading server, request reading, paced writing.

The handler reads a request, asks the router (the
:class:`~agent.simulator.server.ProviderSimulator`) for an :class:`Outcome`
and carries it out: JSON bodies with a Content-Length (HTTP/1.1 keep-alive),
server-sent events with chunked transfer encoding, paced by the outcome's time
to first token and tokens per second, or a dropped connection. Every wait is
on the server's stop event, so :meth:`SimulatorHTTPServer.close_all` wakes
paced and "slow" replies at once and the test that stops the simulator leaves
no thread behind.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from agent.simulator.exchange import SseEvent

__all__ = ["Outcome", "Router", "SimulatorHTTPServer"]

log = logging.getLogger(__name__)

_CONNECTION_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)
_MAX_BODY = 64 * 1024 * 1024


@dataclass
class Outcome:
    """What to send back for one request.

    Attributes:
        status: HTTP status.
        body: a JSON body, for non-streaming answers and errors.
        events: server-sent events, for streaming answers.
        headers: extra response headers.
        drop: close the connection without answering.
        delay: seconds to wait before answering (``"slow"`` fault).
        ttft: seconds before the first token.
        tokens_per_second: generation speed, None for instant.
        output_tokens: generated tokens (paces a non-streaming answer).
    """

    status: int = 200
    body: dict[str, Any] | None = None
    events: list[SseEvent] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    delay: float = 0.0
    ttft: float = 0.0
    tokens_per_second: float | None = None
    output_tokens: int = 0


class Router(Protocol):
    """Decides the outcome of a request (implemented by ``ProviderSimulator``)."""

    def route(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Outcome:
        """The outcome of one request."""
        ...


class SimulatorHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that can cut every open connection on stop.

    Args:
        address: ``(host, port)`` to bind.
        router: decides each request's outcome.
    """

    daemon_threads = True
    # socketserver's default listen backlog is 5: a burst of a thousand turns calling at once
    # (a benchmark's workers) overflowed it and got "connection reset" while the accepting
    # thread waited for a core. A provider's edge takes such bursts.
    request_queue_size = 4096

    def __init__(self, address: tuple[str, int], router: Router) -> None:
        self.router = router
        self.stopping = threading.Event()
        self._open_lock = threading.Lock()
        self._open: dict[threading.Thread, socket.socket] = {}
        super().__init__(address, _Handler)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection, tracked so that :meth:`close_all` can cut it."""
        me = threading.current_thread()
        with self._open_lock:
            if self.stopping.is_set():
                self.shutdown_request(request)
                return
            self._open[me] = request
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.pop(me, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a handler failure instead of printing it to stderr.

        A client that went away (a worker stopped mid-call resets its
        connections) is no failure of the simulator: one debug line.
        """
        error = sys.exc_info()[1]
        if isinstance(error, _CONNECTION_ERRORS):
            log.debug("provider simulator: %s went away (%r)", client_address, error)
            return
        log.exception("provider simulator: error while serving %s", client_address)

    def close_all(self, timeout: float = 5.0) -> None:
        """Stop accepting, wake every waiting reply, cut open connections, join handlers."""
        self.stopping.set()
        self.shutdown()
        with self._open_lock:
            open_connections = list(self._open.items())
        for _, sock in open_connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread, _ in open_connections:
            thread.join(timeout)
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle plus the
    # client's delayed ACK adds ~40 ms to every response.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server_version = "agent-cluster-provider-simulator/1"
    server: SimulatorHTTPServer

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("provider simulator: %s", format % args)

    def _serve(self, method: str) -> None:
        try:
            body = self._read_body()
            if body is None:
                return
            outcome = self.server.router.route(method, self.path, dict(self.headers.items()), body)
            self._send(outcome)
        except _CONNECTION_ERRORS:
            self.close_connection = True

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._send_json(
                411, {"error": {"message": "send the request body with a Content-Length"}}
            )
            self.close_connection = True
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self._send_json(
                400, {"error": {"message": f"bad Content-Length (max {_MAX_BODY} bytes)"}}
            )
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _stopped_while_waiting(self, seconds: float) -> bool:
        if seconds <= 0:
            return self.server.stopping.is_set()
        return self.server.stopping.wait(seconds)

    def _send(self, outcome: Outcome) -> None:
        if self._stopped_while_waiting(outcome.delay) or outcome.drop:
            self._drop()
            return
        if outcome.events is not None:
            self._send_stream(outcome)
            return
        wait = 0.0
        if outcome.status == 200:
            wait = outcome.ttft
            if outcome.tokens_per_second:
                wait += outcome.output_tokens / outcome.tokens_per_second
        if self._stopped_while_waiting(wait):
            self._drop()
            return
        self._send_json(outcome.status, outcome.body or {}, outcome.headers)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send_json(
        self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, outcome: Outcome) -> None:
        self.send_response(outcome.status)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in outcome.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self._stopped_while_waiting(outcome.ttft):
            self._drop()
            return
        tps = outcome.tokens_per_second
        for event in outcome.events or []:
            if (
                tps
                and event.generated_tokens
                and self._stopped_while_waiting(event.generated_tokens / tps)
            ):
                self._drop()
                return
            self._write_chunk(event.encode())
        self._write_chunk(b"")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode("ascii") + data + b"\r\n")
