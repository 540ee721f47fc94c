"""A worker's HTTP probe endpoint: Prometheus ``/metrics``, ``/livez`` and ``/readyz``.

One small threaded HTTP server per worker process (``metrics_port``; 0
serves none), so Prometheus scrapes each worker and a Kubernetes kubelet
probes it without a Redis client:

* ``GET /metrics``: the worker's registry (:class:`worker.metrics.WorkerMetrics`)
  in the Prometheus text format;
* ``GET /livez``: 200 while the process' heartbeat thread runs, 503 once it
  stopped (a wedged or fatally failed worker: restart it). Redis being down
  does not fail it: restarting every worker would not bring Redis back;
* ``GET /readyz``: 200 when the worker is registered, active and its last
  heartbeat reached Redis within the heartbeat TTL; 503 with the reason
  otherwise (starting, draining, cut off from Redis).

``agent-cluster health WORKER`` answers the readiness question from Redis
alone, for probes that cannot reach the worker's port.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from cluster.errors import ConfigError

__all__ = ["Probe", "ProbeServer"]

log = logging.getLogger("worker.probe_server")

Probe = Callable[[], tuple[bool, str]]
"""A check: ``(passed, one-line reason)``."""


class ProbeServer:
    """Serves ``/metrics``, ``/livez`` and ``/readyz`` on a daemon thread."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        live: Probe,
        ready: Probe,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """Bind the socket now (a taken port fails the worker's start); serve after :meth:`start`.

        Args:
            registry: What ``/metrics`` exposes.
            live: The liveness check.
            ready: The readiness check.
            host: Address to listen on.
            port: TCP port; 0 picks a free one (see :attr:`port`).

        Raises:
            ConfigError: the address cannot be bound (in use, not local).
        """
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
            "/livez": lambda: _probe(live),
            "/readyz": lambda: _probe(ready),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                route = routes.get(self.path.split("?", 1)[0])
                if route is None:
                    status, kind, body = (
                        404,
                        "text/plain",
                        b"not found: /metrics, /livez, /readyz\n",
                    )
                else:
                    try:
                        status, kind, body = route()
                    except Exception as exc:  # a probe must answer, never hang the kubelet
                        log.exception("probe %s failed", self.path)
                        status, kind, body = 500, "text/plain", f"{type(exc).__name__}\n".encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would flood the worker's log

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(
                f"metrics_port: cannot listen on {host}:{port} ({exc.strerror}); choose another "
                "port, or 0 to serve no probe endpoint"
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="probe-server", daemon=True
        )

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve on a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close the socket and join the thread."""
        if self._thread.ident is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


def _probe(check: Probe) -> tuple[int, str, bytes]:
    passed, reason = check()
    return (200 if passed else 503), "text/plain; charset=utf-8", (reason + "\n").encode()
