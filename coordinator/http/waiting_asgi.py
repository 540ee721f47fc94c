"""The waiting routes on raw ASGI: what a caller holds while it waits, and nothing more.

A caller waiting on a slow model holds its connection for seconds to
minutes, so what its request keeps alive meanwhile is the gateway's
capacity. Starlette's per-request machinery (its error and exception
middleware, the router's and ``request_response``'s layers, and for a
streamed answer an anyio task group with a second task that listens for
the disconnect) costs a few KiB per waiting caller. :class:`GatewayApp` is
the Starlette app with the routes whose callers wait (``POST .../messages``,
``GET .../events``, ``POST /v1/chat/completions``) served below that
machinery: the same routes matched in the same order, the same handlers,
the app's middleware (request metrics) and exception handlers (the same
error bodies), and a streamed answer (:class:`HeldStream`) written by the
request's own task, which also reads the connection for the disconnect
while it waits (:func:`disconnected`). Every other route goes through
Starlette as before.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Coroutine
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from coordinator.http.forwarded import ForwardedHeaders
from coordinator.http.waiters import Hold

__all__ = ["GatewayApp", "HeldStream", "disconnected"]

log = logging.getLogger("coordinator.http")

Handler = Callable[[Request], Awaitable[ASGIApp]]
Gone = Callable[[], Awaitable[None]]


async def disconnected(receive: Receive) -> None:
    """Return when the client's connection closed (call once its request body was read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


# The head of every event stream (one copy for all of them).
_EVENT_STREAM_HEAD = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)


class HeldStream:
    """A server-sent event stream written by the request's own task; its caller's place is
    given back however it ends.

    ``content`` is called with a function that returns when the client went
    away; the chunks it yields are sent as they come. No task group and no
    second task: the content awaits that function while it waits for the
    turn (:meth:`~coordinator.http.waiters.Waiters.wait`), so a client that
    goes away ends the stream at once, and a write to a closed connection
    ends it too.
    """

    __slots__ = ("_content", "_hold", "_message_id")

    def __init__(
        self,
        content: Callable[[Gone], AsyncGenerator[bytes, None]],
        *,
        hold: Hold,
        message_id: str,
    ) -> None:
        """Stream ``content`` (headers: the event stream's and ``X-Message-Id``); ``hold`` is
        released when the response ends, whatever ends it."""
        self._content = content
        self._hold = hold
        self._message_id = message_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        def gone() -> Awaitable[None]:
            return disconnected(receive)

        chunks = self._content(gone)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self._head()})
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # a server that reports a closed connection on write: the caller left
            pass
        finally:
            self._hold.release()
            await chunks.aclose()

    def _head(self) -> list[tuple[bytes, bytes]]:
        """The response's headers, made as they are sent (a waiting stream does not keep them)."""
        return [*_EVENT_STREAM_HEAD, (b"x-message-id", self._message_id.encode("latin-1"))]


class GatewayApp(Starlette):
    """The gateway's Starlette app, serving the waiting routes below Starlette's machinery."""

    def __init__(self, *, waiting: Collection[Handler], **kwargs: Any) -> None:
        """Build the app (``kwargs`` as for Starlette).

        Args:
            waiting: The endpoints whose callers wait (served on raw ASGI).
            kwargs: Starlette's arguments (routes, middleware, exception handlers, lifespan).
        """
        super().__init__(**kwargs)
        self._waiting = frozenset(waiting)
        self._waiting_stack: ASGIApp | None = None
        self.forwarded: ForwardedHeaders | None = None
        """Applied to every request's scope before it is served (``serve`` sets it)."""

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, None]:
        # Not a coroutine function: it returns the coroutine that serves the request, so a
        # waiting caller's stack holds no frame of this dispatch while it waits.
        if self.forwarded is not None and scope["type"] != "lifespan":
            self.forwarded.apply(scope, receive, send)
        if scope["type"] == "http":
            for route in self.router.routes:
                match, child_scope = route.matches(scope)
                if match is Match.NONE:
                    continue
                if match is Match.FULL and getattr(route, "endpoint", None) in self._waiting:
                    scope["app"] = self
                    scope["route"] = route
                    scope.update(child_scope)
                    if self._waiting_stack is None:
                        self._waiting_stack = self._stack()
                    return self._waiting_stack(scope, receive, send)  # type: ignore[return-value]
                break  # the first route that matches decides, as in Starlette's router
        return super().__call__(scope, receive, send)

    # Marked as a coroutine function, as it behaves like one: every ASGI host that tells
    # ASGI 3 from ASGI 2 by ``asyncio.iscoroutinefunction`` (uvicorn, Starlette's
    # TestClient, gunicorn's uvicorn workers) then calls it with all three arguments.
    if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
        __call__ = inspect.markcoroutinefunction(__call__)
    else:
        __call__._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]

    def _stack(self) -> ASGIApp:
        """The app's own middleware (request metrics, ``build_app``'s ``middleware``) around
        the waiting routes, as Starlette wraps its router."""
        app: ASGIApp = self._serve_waiting
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app

    async def _serve_waiting(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response: ASGIApp
        try:
            response = await scope["endpoint"](request)
        except Exception as exc:
            response = await self._error(request, exc)
        del request  # a streamed answer's caller waits in the response: not holding the request
        await response(scope, receive, send)

    async def _error(self, request: Request, exc: Exception) -> Response:
        """The answer of the app's exception handler for ``exc`` (the nearest class's)."""
        for cls in type(exc).__mro__:
            handler = self.exception_handlers.get(cls)
            if handler is not None:
                response: Response = await handler(request, exc)
                return response
        raise exc
