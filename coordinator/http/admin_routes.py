"""The admin HTTP API (``Authorization: Bearer <AGENT_CLUSTER_ADMIN_TOKEN>``).

=============================================  ===============================================
``GET /v1/admin/status``                       workers, queues, dead letters, every tenant's
                                               usage (``status --json``)
``GET /v1/admin/sessions/{key}``               any tenant's session by its stored key (``name``
                                               for the default tenant, ``@TENANT/name`` for
                                               the others), with its tenant (``session --json``)
``GET /v1/admin/config[?version=N]``           the current (or an earlier) config document
``POST /v1/admin/config[?check=1&note=..]``    validate (secrets, schema) and publish a YAML or
                                               JSON document as the next version; one that
                                               removes keys needs ``confirm_removals=1``
``GET /v1/admin/config/history[?limit=N]``     who published which version, when
``POST /v1/admin/config/rollback``             ``{"version": N}``: publish N's document again
``POST /v1/admin/registry/bump``               ``{"reason": ...}``: agents rebuild, MCP rediscovered
``POST /v1/admin/workers/{id}/drain``          ``{"timeout": S}``: drain a worker
``GET /v1/admin/workers/{id}/drain``           how far its drain has got
=============================================  ===============================================

The same operations as the ``agent-cluster config|registry|drain|status``
commands, through the same modules (:mod:`cluster.config_schema`,
:mod:`cluster.versions`, :mod:`coordinator.admin`, :mod:`coordinator.status`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from cluster.config_diff import check_removals, diff_configs
from cluster.config_schema import parse_config
from cluster.errors import InvalidMessage, RequestRefused
from cluster.versions import HISTORY_LIMIT, RedisVersionStore
from coordinator.admin import drain_progress, drain_worker
from coordinator.http.body import read_body, read_object
from coordinator.http.context import gateway, options, require_admin
from coordinator.http.gateway import Gateway
from coordinator.status import read_session, read_status
from coordinator.validation import validate_session_key

__all__ = ["admin_routes"]

_YAML_TYPES = frozenset(
    {
        "application/yaml",
        "application/x-yaml",
        "text/yaml",
        "text/x-yaml",
        "application/json",
        "text/plain",
    }
)


def _store(gw: Gateway) -> RedisVersionStore:
    return RedisVersionStore(
        gw.coordinator.client, gw.keyspace, max_config_bytes=gw.settings.max_config_bytes
    )


def _int_param(
    request: Request, name: str, default: int | None, *, low: int, high: int
) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.strip().lstrip("-").isdigit() or not low <= int(raw) <= high:
        raise InvalidMessage(
            f"query parameter {name} must be an integer in [{low}, {high}], got {raw!r}"
        )
    return int(raw)


def _author(request: Request) -> str:
    given = request.query_params.get("author")
    if given:
        if len(given) > 200 or not given.isprintable():
            raise InvalidMessage("author must be at most 200 printable characters")
        return given
    host = request.client.host if request.client is not None else "unknown"
    return f"http@{host}"


async def status(request: Request) -> Response:
    """The cluster at one instant."""
    require_admin(request)
    gw = gateway(request)
    snapshot = await gw.run(read_status, gw.coordinator.client, gw.keyspace)
    return JSONResponse(snapshot.as_dict())


async def session(request: Request) -> Response:
    """Any tenant's session by its stored key (404 when nothing of it is stored)."""
    require_admin(request)
    gw = gateway(request)
    key = validate_session_key(request.path_params["key"])
    found = await gw.run(read_session, gw.coordinator.client, gw.keyspace, key)
    if not found.exists:
        raise RequestRefused(f"no session {key!r} is stored", status=404, kind="not_found")
    return JSONResponse(found.as_dict())


async def show_config(request: Request) -> Response:
    """The current config document, or version ``?version=N``."""
    require_admin(request)
    store = _store(gateway(request))
    version = _int_param(request, "version", None, low=1, high=2**53)
    if version is None:
        current, document = await gateway(request).run(store.current_config)
        return JSONResponse({"version": current, "document": document})
    document = await gateway(request).run(store.config_at, version)
    return JSONResponse({"version": version, "document": document})


async def push_config(request: Request) -> Response:
    """Validate a YAML/JSON document (secrets first, then the schema) and publish it.

    A document that removes keys of the current config is refused (400) unless
    ``?confirm_removals=1`` confirms it.
    """
    require_admin(request)
    gw = gateway(request)
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in _YAML_TYPES:
        raise RequestRefused(
            f"send the config as application/yaml or application/json, got {media or 'none'!r}",
            status=415,
            kind="unsupported_media_type",
        )
    raw = await read_body(
        request, limit=min(options(request).max_body_bytes, gw.settings.max_config_bytes)
    )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(f"the config is not UTF-8 (byte {exc.start})") from None
    document = parse_config(text, source="request body")
    note = request.query_params.get("note", "")
    if len(note) > 500:
        raise InvalidMessage("note must be at most 500 characters")
    store = _store(gw)
    if request.query_params.get("check") in ("1", "true", "yes"):
        return JSONResponse({"valid": True})
    current, before = await gw.run(store.current_config)
    if request.query_params.get("confirm_removals") not in ("1", "true", "yes"):
        check_removals(before, document, confirm="?confirm_removals=1")

    def publish() -> int:
        return store.publish_config(
            document, author=_author(request), source="http", note=note, expect_version=current
        )

    version = await gw.run(publish)
    return JSONResponse(
        {"version": version, "changes": [c.line() for c in diff_configs(before, document)]}
    )


async def config_history(request: Request) -> Response:
    """The last publishes, newest first."""
    require_admin(request)
    limit = _int_param(request, "limit", 20, low=1, high=HISTORY_LIMIT)
    assert limit is not None
    records = await gateway(request).run(_store(gateway(request)).history, limit)
    return JSONResponse({"history": [dataclasses.asdict(r) for r in records]})


async def rollback_config(request: Request) -> Response:
    """Publish an earlier version's document as the next version."""
    require_admin(request)
    gw = gateway(request)
    body = await read_object(
        request, limit=options(request).max_body_bytes, allowed=frozenset({"version"})
    )
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidMessage(f"version must be a config version number >= 1, got {version!r}")
    store = _store(gw)
    document = await gw.run(store.config_at, version)

    def publish() -> int:
        return store.publish_config(
            document, author=_author(request), source="rollback", note=f"rollback to {version}"
        )

    return JSONResponse({"version": await gw.run(publish), "rolled_back_to": version})


async def registry_bump(request: Request) -> Response:
    """Bump the cluster-wide tool registry generation (agents rebuild on their next turn)."""
    require_admin(request)
    gw = gateway(request)
    body = await read_object(
        request,
        limit=options(request).max_body_bytes,
        allowed=frozenset({"reason"}),
        required=False,
    )
    reason = body.get("reason", "registry bump (http)")
    if not isinstance(reason, str) or not 0 < len(reason) <= 200:
        raise InvalidMessage(f"reason must be a string of 1-200 characters, got {reason!r}")
    generation = await gw.run(_store(gw).bump_registry_generation, reason)
    return JSONResponse({"generation": generation})


def _worker_id(request: Request, gw: Gateway) -> str:
    return gw.keyspace.check_worker_id(request.path_params["worker_id"])


async def drain(request: Request) -> Response:
    """Mark a worker draining: it hands its sessions on, finishes its turns, exits."""
    require_admin(request)
    gw = gateway(request)
    worker_id = _worker_id(request, gw)
    body = await read_object(
        request,
        limit=options(request).max_body_bytes,
        allowed=frozenset({"timeout"}),
        required=False,
    )
    timeout: Any = body.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or not 0 <= timeout <= 86400
    ):
        raise InvalidMessage(f"timeout must be seconds in [0, 86400], got {timeout!r}")

    def mark() -> None:
        drain_worker(gw.coordinator.client, gw.keyspace, worker_id, timeout=timeout)

    await gw.run(mark)
    return JSONResponse({"worker_id": worker_id, "draining": True}, status_code=202)


async def drain_status(request: Request) -> Response:
    """How far a worker's drain has got (``registered: false`` once it left)."""
    require_admin(request)
    gw = gateway(request)
    worker_id = _worker_id(request, gw)
    progress = await gw.run(drain_progress, gw.coordinator.client, gw.keyspace, worker_id)
    return JSONResponse(dataclasses.asdict(progress))


def admin_routes() -> list[BaseRoute]:
    """The admin API's routes."""
    return [
        Route("/v1/admin/status", status, methods=["GET"]),
        Route("/v1/admin/sessions/{key:session_key}", session, methods=["GET"]),
        Route("/v1/admin/config", show_config, methods=["GET"]),
        Route("/v1/admin/config", push_config, methods=["POST"]),
        Route("/v1/admin/config/history", config_history, methods=["GET"]),
        Route("/v1/admin/config/rollback", rollback_config, methods=["POST"]),
        Route("/v1/admin/registry/bump", registry_bump, methods=["POST"]),
        Route("/v1/admin/workers/{worker_id}/drain", drain, methods=["POST"]),
        Route("/v1/admin/workers/{worker_id}/drain", drain_status, methods=["GET"]),
    ]
