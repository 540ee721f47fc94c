"""The client address and scheme a trusted proxy forwarded, written into a request's scope.

uvicorn applies ``X-Forwarded-For`` and ``X-Forwarded-Proto`` (from the
addresses of ``FORWARDED_ALLOW_IPS``) with its ``ProxyHeadersMiddleware``
around the app: a coroutine that awaits the app, so every request holds
its frame for as long as it runs, a waiting caller's for minutes.
:class:`ForwardedHeaders` runs that same middleware's rewrite of the scope
(its code, not a copy) to completion before the app serves the request,
and keeps nothing afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, cast

from starlette.types import Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

__all__ = ["ForwardedHeaders"]


async def _rewritten(scope: Scope, receive: Receive, send: Send) -> None:
    """The app behind the middleware: it returns at once, the scope rewritten."""


class ForwardedHeaders:
    """uvicorn's proxy-headers rewrite of a scope, as a plain call."""

    __slots__ = ("_middleware",)

    def __init__(self, trusted_hosts: list[str] | str) -> None:
        """Trust the proxies at ``trusted_hosts`` (uvicorn's ``forwarded_allow_ips``)."""
        # Typed as Starlette's ASGI callables (uvicorn's own types are narrower, same protocol).
        self._middleware = cast(
            Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]],
            ProxyHeadersMiddleware(cast(Any, _rewritten), trusted_hosts=trusted_hosts),
        )

    def apply(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Set ``scope``'s client and scheme from the forwarded headers of a trusted proxy."""
        step = self._middleware(scope, receive, send)
        try:
            step.send(None)  # nothing in it waits: the first step runs it to its end
        except StopIteration:
            return
        step.close()
        raise RuntimeError("uvicorn's ProxyHeadersMiddleware waited on something")
