"""Every error of the HTTP API as a JSON body: ``{"error": {"type", "message"}}`` and a 4xx/5xx.

The body has the shape of OpenAI's error objects, so the OpenAI-compatible
endpoint and the native one answer alike. Cluster errors map to statuses by
what the caller should do: fix the request (400, 404, 409, 413, 415), retry
later (429 past a tenant's limit and 503, both with ``Retry-After``), wait
again (504), or report the worker's failure (502). Only a bug answers 500,
and its body says nothing of the internals.
"""

from __future__ import annotations

import logging
import math

from starlette.requests import Request
from starlette.responses import JSONResponse

from cluster.errors import (
    AgentClusterError,
    ClusterUnavailable,
    ConfigError,
    GatewayFull,
    InvalidMessage,
    MessageLost,
    NoLiveWorkers,
    NotReplicated,
    PayloadTooLarge,
    RequestRefused,
    TenantLimited,
    TurnFailed,
    TurnRejected,
    TurnTimeout,
    UnknownWorker,
)

__all__ = ["error_body", "error_response", "handle_cluster_error", "status_of"]

log = logging.getLogger("coordinator.http")

# Most specific first: PayloadTooLarge is an InvalidMessage.
_STATUS: tuple[tuple[type[AgentClusterError], int, str], ...] = (
    (RequestRefused, 400, "invalid_request"),
    (PayloadTooLarge, 413, "payload_too_large"),
    (InvalidMessage, 400, "invalid_request"),
    (ConfigError, 400, "invalid_config"),
    (UnknownWorker, 404, "unknown_worker"),
    (TurnRejected, 409, "session_busy"),
    (TenantLimited, 429, "rate_limited"),
    (GatewayFull, 503, "gateway_full"),
    (NoLiveWorkers, 503, "no_live_workers"),
    (NotReplicated, 503, "not_replicated"),
    (MessageLost, 503, "message_lost"),
    (ClusterUnavailable, 503, "cluster_unavailable"),
    (TurnTimeout, 504, "turn_timeout"),
    (TurnFailed, 502, "turn_failed"),
)


def status_of(exc: AgentClusterError) -> tuple[int, str]:
    """The HTTP status and error type of a cluster error."""
    if isinstance(exc, RequestRefused):
        return exc.status, exc.kind
    for cls, status, kind in _STATUS:
        if isinstance(exc, cls):
            return status, kind
    return 500, "internal_error"


def error_body(kind: str, message: str) -> dict[str, object]:
    """The JSON error object (OpenAI's shape: ``param`` and ``code`` included)."""
    return {"error": {"type": kind, "message": message, "param": None, "code": kind}}


def error_response(status: int, kind: str, message: str) -> JSONResponse:
    """A JSON error response."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(kind, message), status_code=status, headers=headers)


async def handle_cluster_error(_request: Request, exc: Exception) -> JSONResponse:
    """Starlette exception handler for :class:`AgentClusterError`."""
    assert isinstance(exc, AgentClusterError)
    status, kind = status_of(exc)
    if status >= 500 and status != 503:
        log.warning("request failed: %s: %s", type(exc).__name__, exc)
    response = error_response(status, kind, str(exc))
    if isinstance(exc, TenantLimited | GatewayFull | NotReplicated | MessageLost):
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return response
