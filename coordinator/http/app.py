"""The ASGI app of the gateway (Starlette) and how ``agent-cluster serve`` runs it (uvicorn).

:func:`build_app` wires the routes (native API, OpenAI-compatible endpoint,
admin, health, the OpenAPI document, the chat platforms' webhooks and any
``extra_routes`` another part of the product mounts, such as metrics or a
status page), the error handlers (every error a JSON body; a bug a 500 that
reveals nothing), and the lifespan that opens the
:class:`~coordinator.http.gateway.Gateway` at start (and runs the chat
platform bots of ``telegram_bots``/``slack_apps``, :mod:`coordinator.platforms`)
and closes it at shutdown.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from cluster.errors import AgentClusterError
from cluster.glibc_malloc import fewer_malloc_arenas
from cluster.settings import ClusterSettings
from coordinator.http.admin_routes import admin_routes
from coordinator.http.context import HttpOptions
from coordinator.http.errors import error_response, handle_cluster_error
from coordinator.http.gateway import Gateway
from coordinator.http.observability import instrument, observability_routes
from coordinator.http.openai_compat import chat_completion_routes, chat_completions
from coordinator.http.openapi import openapi_document
from coordinator.http.routes import get_events, post_message, routes
from coordinator.http.schedule_routes import schedule_routes
from coordinator.http.waiting_asgi import GatewayApp

__all__ = ["build_app", "serve"]

log = logging.getLogger("coordinator.http")


async def _openapi(_request: Request) -> Response:
    return JSONResponse(openapi_document())


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(405, "method_not_allowed", f"{exc.detail}: see /openapi.json")
    if exc.status_code == 404:
        return error_response(404, "not_found", "no such endpoint: see /openapi.json")
    return error_response(exc.status_code, "http_error", str(exc.detail))


async def _redis_error(_request: Request, exc: Exception) -> Response:
    return error_response(503, "cluster_unavailable", f"Redis is unreachable ({exc}); retry later")


async def _bug(_request: Request, exc: Exception) -> Response:
    log.error("request failed with a bug", exc_info=exc)
    return error_response(500, "internal_error", "internal error (logged by the gateway)")


def build_app(
    settings: ClusterSettings,
    *,
    options: HttpOptions | None = None,
    gateway: Gateway | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    middleware: Sequence[Middleware] = (),
) -> GatewayApp:
    """Build the gateway's ASGI app.

    Args:
        settings: The cluster to serve (Redis URL, namespace, timeouts, limits).
        options: API keys, admin token, body limit (default: no key accepted,
            admin disabled).
        gateway: An open gateway to use (default: one opened at startup and
            closed at shutdown).
        extra_routes: More routes (metrics, a status page); handlers reach the
            gateway as ``request.app.state.gateway``.
        middleware: ASGI middleware around every route (e.g. request metrics).

    Returns:
        The Starlette app (``app.state.gateway`` is set while it runs).
    """
    # coordinator.platforms builds on coordinator.http: imported here, not at module level
    from coordinator.platforms.hub import PlatformHub, platform_routes

    made_options = options or HttpOptions()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = gateway is None
        app.state.gateway = Gateway.open(settings) if gateway is None else gateway
        try:
            if settings.telegram_bots or settings.slack_apps:
                async with PlatformHub(app.state.gateway).running() as hub:
                    app.state.platforms = hub
                    yield
            else:
                yield
        finally:
            if owned:
                await app.state.gateway.close()

    app = GatewayApp(
        waiting=(post_message, get_events, chat_completions),
        routes=[
            *schedule_routes(),  # before routes(): GET /v1/sessions/{key} would take .../schedules
            *routes(),
            *chat_completion_routes(),
            *admin_routes(),
            Route("/openapi.json", _openapi, methods=["GET"]),
            *observability_routes(),
            *platform_routes(),
            *extra_routes,
        ],
        exception_handlers={
            AgentClusterError: handle_cluster_error,
            HTTPException: _http_error,
            redis.RedisError: _redis_error,
            Exception: _bug,
        },
        middleware=list(middleware),
        lifespan=lifespan,
    )
    app.state.options = made_options
    instrument(app)  # /metrics counts every request
    if gateway is not None:
        app.state.gateway = gateway
    return app


def serve(
    settings: ClusterSettings,
    *,
    options: HttpOptions,
    host: str = "127.0.0.1",
    port: int = 8080,
    extra_routes: Sequence[BaseRoute] = (),
    middleware: Sequence[Middleware] = (),
) -> None:
    """Serve the gateway with uvicorn until SIGINT/SIGTERM (graceful: running requests finish).

    A connection whose request head (request line and headers) is not
    complete within ``settings.http_header_timeout`` is closed
    (:mod:`coordinator.http.head_timeout`).
    """
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from coordinator.http.forwarded import ForwardedHeaders
    from coordinator.http.head_timeout import head_timeout_protocol

    app = build_app(settings, options=options, extra_routes=extra_routes, middleware=middleware)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        # Applied by the app itself (same code, no frame held per request): GatewayApp.forwarded.
        proxy_headers=False,
        http=head_timeout_protocol(settings.http_header_timeout),
        # Said, not detected: GatewayApp.__call__ returns its coroutine rather than running
        # as one (it is only marked a coroutine function, for hosts that detect that way).
        interface="asgi3",
    )
    app.forwarded = ForwardedHeaders(config.forwarded_allow_ips)
    fewer_malloc_arenas()
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)  # as uvicorn.run exits
