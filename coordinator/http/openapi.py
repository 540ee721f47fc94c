"""The OpenAPI 3.1 document of the HTTP API, served at ``/openapi.json``.

Written out rather than generated: the handlers validate by hand (with the
messages of :mod:`coordinator.validation`), and a test checks that every
route of the app is documented here and every documented path is routed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_ERROR = {"$ref": "#/components/schemas/Error"}
_STR = {"type": "string"}
_NUM = {"type": "number"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_OBJ = {"type": "object"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _op(
    summary: str,
    *,
    ok: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
    errors: tuple[int, ...] = (400,),
    security: str | None = "apiKey",
    params: list[dict[str, Any]] | None = None,
    sse: bool = False,
) -> dict[str, Any]:
    content = _json(ok or _OBJ)
    if sse:
        content["text/event-stream"] = {"schema": _STR}
    responses: dict[str, Any] = {"200": {"description": "OK", "content": content}}
    for status in errors:
        responses[str(status)] = {"description": _REASONS[status], "content": _json(_ERROR)}
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    if security is not None:
        op["security"] = [{security: []}]
        responses.setdefault("401", {"description": _REASONS[401], "content": _json(_ERROR)})
    if params:
        op["parameters"] = params
    return op


_REASONS = {
    400: "invalid request (the message says which field and why)",
    401: "missing or wrong API key / admin token",
    403: "the admin API is disabled",
    404: "no such session (of this API key's tenant), message or worker",
    409: "strategy reject and a turn of the session is running",
    413: "body or field larger than its limit",
    415: "wrong Content-Type",
    429: "the API key's tenant is past its requests per minute or turns in flight (Retry-After)",
    502: "the worker ran the turn and it failed",
    503: "Redis unreachable, no live worker, the gateway is full (gateway_full, Retry-After), "
    "or a Redis failover: not confirmed by a replica (not_replicated) or lost (message_lost); "
    "resend the same message_id after Retry-After",
    504: "no reply within the timeout (resend the same message_id to get it)",
}

_KEY = {
    "name": "key",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 256},
}
_WORKER = {"name": "worker_id", "in": "path", "required": True, "schema": _STR}
_LAST_ID = {"name": "Last-Event-ID", "in": "header", "required": False, "schema": _STR}

_USAGE = {
    "type": "object",
    "properties": {
        "input_tokens": _INT,
        "cache_read_tokens": _INT,
        "cache_write_tokens": _INT,
        "output_tokens": _INT,
        "api_calls": _INT,
    },
}
_REPLY = {
    "type": "object",
    "properties": {
        "message_id": _STR,
        "text": _STR,
        "worker_id": _STR,
        "turn": _INT,
        "cache_hit": _BOOL,
        "interrupted": _BOOL,
        "rolled_back": _BOOL,
        "usage": _USAGE,
    },
}
_MESSAGE = {
    "type": "object",
    "required": ["text"],
    "additionalProperties": False,
    "properties": {
        "text": {"type": "string", "minLength": 1},
        "message_id": {"type": "string", "maxLength": 256},
        "strategy": {"enum": ["enqueue", "interrupt", "reject", "rollback"]},
        "stream": _BOOL,
        "timeout": {"type": "number", "exclusiveMinimum": 0},
        "user_id": _STR,
        "platform": _STR,
        "chat_id": _STR,
        "reasoning": _STR,
    },
}
_CHAT = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        "model": _STR,
        "messages": {"type": "array", "minItems": 1, "items": _OBJ},
        "stream": _BOOL,
        "user": _STR,
        "stream_options": _OBJ,
    },
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document (a fresh dict each call)."""
    admin = "adminToken"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "agent-cluster gateway",
            "version": "1",
            "description": "Chat sessions kept on a cluster of workers; replies as JSON or "
            "server-sent events; an OpenAI-compatible endpoint; admin operations.",
        },
        "paths": {
            "/healthz": {"get": _op("liveness", security=None, errors=())},
            "/readyz": {
                "get": _op(
                    "readiness: room for a waiting caller, Redis answers, a worker is live",
                    security=None,
                    errors=(503,),
                )
            },
            "/v1/sessions/{key}/messages": {
                "post": _op(
                    "send a message; JSON reply, or SSE with Accept: text/event-stream "
                    "(resume: same message_id and Last-Event-ID)",
                    ok=_REPLY,
                    body=_json(_MESSAGE),
                    errors=(400, 409, 413, 415, 429, 502, 503, 504),
                    params=[_KEY, _LAST_ID],
                    sse=True,
                )
            },
            "/v1/sessions/{key}/messages/{message_id}/events": {
                "get": _op(
                    "a message's turn events (SSE) after Last-Event-ID",
                    errors=(400, 404, 429),
                    params=[
                        _KEY,
                        {"name": "message_id", "in": "path", "required": True, "schema": _STR},
                        _LAST_ID,
                    ],
                    sse=True,
                )
            },
            "/v1/sessions/{key}": {
                "get": _op(
                    "owner, turns, pending turns, state, tenant",
                    errors=(400, 404, 429, 503),
                    params=[_KEY],
                ),
                "delete": _op(
                    "reset the session (/new)",
                    ok=_REPLY,
                    errors=(400, 404, 429, 502, 503, 504),
                    params=[_KEY],
                ),
            },
            "/v1/sessions/{key}/interrupt": {
                "post": _op(
                    "stop the running turn (/stop)", errors=(400, 404, 429, 503), params=[_KEY]
                )
            },
            "/v1/chat/completions": {
                "post": _op(
                    "OpenAI-compatible chat completion; session from X-Session-Key or user",
                    body=_json(_CHAT),
                    errors=(400, 409, 413, 415, 429, 502, 503, 504),
                    sse=True,
                )
            },
            "/v1/admin/status": {"get": _op("cluster status", security=admin, errors=(403,))},
            "/v1/admin/sessions/{key}": {
                "get": _op(
                    "any tenant's session by its stored key (@TENANT/name), with its tenant",
                    security=admin,
                    errors=(400, 403, 404),
                    params=[_KEY],
                )
            },
            "/v1/admin/config": {
                "get": _op("current config (or ?version=N)", security=admin, errors=(400, 403)),
                "post": _op(
                    "validate and publish a config (YAML or JSON body; ?check=1 validates only)",
                    security=admin,
                    body={
                        "application/yaml": {"schema": _STR},
                        "application/json": {"schema": _OBJ},
                    },
                    errors=(400, 403, 413, 415),
                ),
            },
            "/v1/admin/config/history": {
                "get": _op("config history", security=admin, errors=(400, 403))
            },
            "/v1/admin/config/rollback": {
                "post": _op(
                    "publish an earlier version again",
                    security=admin,
                    body=_json(
                        {"type": "object", "required": ["version"], "properties": {"version": _INT}}
                    ),
                    errors=(400, 403, 415),
                )
            },
            "/v1/admin/registry/bump": {
                "post": _op("bump the tool registry generation", security=admin, errors=(400, 403))
            },
            "/v1/admin/workers/{worker_id}/drain": {
                "post": _op(
                    "drain a worker", security=admin, errors=(400, 403, 404), params=[_WORKER]
                ),
                "get": _op("drain progress", security=admin, errors=(400, 403), params=[_WORKER]),
            },
            "/openapi.json": {"get": _op("this document", security=None, errors=())},
        },
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key of the gateway",
                },
                admin: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "AGENT_CLUSTER_ADMIN_TOKEN",
                },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "type": _STR,
                                "message": _STR,
                                "param": {},
                                "code": _STR,
                            },
                        }
                    },
                }
            },
        },
    }
