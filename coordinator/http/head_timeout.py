"""uvicorn's HTTP/1.1 protocol with a bound on the time to receive a request head.

uvicorn times out an idle keep-alive connection, but not one that sends its
request line and headers slowly: a client trickling a header byte every few
seconds holds a connection (and a file descriptor) for as long as it likes,
and a few hundred such clients fill the gateway. :func:`head_timeout_protocol`
returns a subclass of uvicorn's h11 protocol that closes a connection when no
complete request head arrived within ``seconds`` of the connection opening or
of the previous response ending. A request whose head arrived is never cut
off by it: a long turn or an event stream runs as long as it needs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["head_timeout_protocol"]

log = logging.getLogger("coordinator.http")


class _HeadTimeoutProtocol(H11Protocol):
    """H11Protocol that closes a connection whose request head takes too long."""

    head_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

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
