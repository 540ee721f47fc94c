"""The native HTTP API: sessions, their messages (JSON or server-sent events), health.

=========================================================  =====================================
``POST /v1/sessions/{key}/messages``                       send a message; the reply as JSON, or
                                                           the turn as SSE (``Accept:
                                                           text/event-stream``)
``GET /v1/sessions/{key}/messages/{message_id}/events``    the turn's events again (SSE), from
                                                           ``Last-Event-ID``
``GET /v1/sessions/{key}``                                 owner, turns, state, pending turns
``DELETE /v1/sessions/{key}``                              reset (``/new``, in order with the
                                                           session's messages)
``POST /v1/sessions/{key}/interrupt``                      stop the running turn (``/stop``)
``GET /healthz``, ``GET /readyz``                          alive; room for callers, Redis answers,
                                                           a worker lives
=========================================================  =====================================

``{key}`` is the client's session name within its API key's tenant
(:mod:`coordinator.http.tenancy`): another tenant's session of the same name
is another session, and a request about a session its tenant does not have
is answered 404, whoever else has one by that name.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import redis
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from cluster.errors import InvalidMessage, RequestRefused
from cluster.jobs import job_id_for
from cluster.stream_events import STREAM_ATTR, final_event
from coordinator.http.body import read_object
from coordinator.http.context import gateway, options
from coordinator.http.gateway import Gateway
from coordinator.http.sse import KEEPALIVE, SseEvent, encode, event_id_or_none, turn_events
from coordinator.http.tenancy import admit_turn, caller, release_turn, session_key
from coordinator.http.waiters import Hold
from coordinator.http.waiting_asgi import Gone, HeldStream, disconnected
from coordinator.ingress import RESET_COMMANDS, TurnHandle, checked_reply
from coordinator.status import SessionStatus, read_session

__all__ = ["MESSAGE_FIELDS", "routes", "sse_response", "wait_reply"]

MESSAGE_FIELDS = frozenset(
    {
        "text",
        "message_id",
        "strategy",
        "stream",
        "timeout",
        "user_id",
        "platform",
        "chat_id",
        "reasoning",
    }
)
"""Fields of a message request body."""

_ATTRS = ("user_id", "platform", "chat_id", "reasoning")


class SessionKeyConvertor(Convertor[str]):
    """A session key in a path: any characters, ``/`` and newlines too (validated by the handler).

    Starlette's ``path`` convertor stops at a newline, which would answer a
    key holding one with "no such endpoint" instead of saying what is wrong.
    """

    regex = r"[\s\S]+?"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("session_key", SessionKeyConvertor())


def wants_events(request: Request) -> bool:
    """Whether the caller asked for server-sent events."""
    return "text/event-stream" in request.headers.get("accept", "").lower()


def turn_timeout(gw: Gateway, value: Any) -> float:
    """The request's ``timeout``: seconds to wait for the reply (default: the turn timeout)."""
    limit = gw.settings.turn_timeout
    if value is None:
        return limit
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= limit
    ):
        raise InvalidMessage(f"timeout must be seconds in (0, {limit:g}], got {value!r}")
    return float(value)


async def wait_reply(
    gw: Gateway, handle: TurnHandle, timeout: float, request: Request
) -> dict[str, Any]:
    """The reply of a submitted message, or the reason there is none.

    A caller whose connection closes stops waiting at once (its place in the
    gateway is given back); the reply stays for a retry with the same message id.

    Raises:
        TurnTimeout: none within ``timeout`` (it may still come: resubmit the same message id).
        TurnFailed: the worker ran the turn and it failed.
        RequestRefused: 499 ``client_closed``: the caller went away (nobody reads it).
    """

    left = False

    async def gone() -> None:
        nonlocal left
        await disconnected(request.receive)
        left = True

    raw = await gw.wait_reply(handle.session_key, handle.message_id, timeout, gone=gone)
    if raw is None and left:
        raise RequestRefused(
            "the client closed the connection before its reply came; it stays for a retry "
            "with the same message_id",
            status=499,
            kind="client_closed",
        )
    return checked_reply(handle, raw, timeout=timeout)


def reply_body(raw: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer of a message: the final event without its ``type``."""
    body = final_event(raw)
    body.pop("type")
    return body


async def _sse_body(
    gw: Gateway,
    session_key: str,
    message_id: str,
    *,
    after: str | None,
    timeout: float,
    accepted: dict[str, Any] | None,
    gone: Gone,
) -> AsyncGenerator[bytes, None]:
    if accepted is not None:
        yield encode(SseEvent("accepted", {"type": "accepted", **accepted}))
    quiet_since = time.monotonic()
    batch: list[bytes] = []  # the events of one read go out in one write
    events = turn_events(gw, session_key, message_id, after=after, timeout=timeout, gone=gone)
    async for event in events:
        if event is not None:
            batch.append(encode(event))
        elif batch:
            quiet_since = time.monotonic()
            yield b"".join(batch)
            batch.clear()
        elif time.monotonic() - quiet_since >= KEEPALIVE:
            quiet_since = time.monotonic()
            yield b": keepalive\n\n"
    if batch:
        yield b"".join(batch)


def sse_response(
    gw: Gateway,
    session_key: str,
    message_id: str,
    *,
    after: str | None,
    timeout: float,
    accepted: dict[str, Any] | None = None,
    hold: Hold,
) -> HeldStream:
    """A message's turn as server-sent events (after an ``accepted`` event, if given).

    The caller's place in the gateway (``hold``) is given back when the stream ends.
    """

    def body(gone: Gone) -> AsyncGenerator[bytes, None]:
        return _sse_body(
            gw, session_key, message_id, after=after, timeout=timeout, accepted=accepted, gone=gone
        )

    return HeldStream(body, hold=hold, message_id=message_id)


async def submit_turn(
    request: Request,
    tenant: str,
    key: str,
    text: str,
    *,
    message_id: str,
    strategy: str,
    attrs: dict[str, Any],
) -> TurnHandle:
    """Submit a message of ``tenant``; a chat turn counts against its turns in flight.

    The count is taken back when no turn runs: the submission failed, the
    message was answered before (its stored reply comes again) or was a
    command. The worker takes it back when it answers the turn.
    """
    gw = gateway(request)
    command = isinstance(text, str) and (
        text.strip().lower() in RESET_COMMANDS or text.strip().lower() == "/stop"
    )
    job_id = None
    if not command and isinstance(message_id, str) and message_id:
        job_id = job_id_for(gw.keyspace.namespace, key, message_id)
        await admit_turn(request, tenant, job_id)
    try:
        handle = await gw.submit(key, text, message_id=message_id, strategy=strategy, attrs=attrs)
    except BaseException:
        if job_id is not None:
            await release_turn(request, tenant, job_id)
        raise
    if job_id is not None and handle.status not in ("queued", "pending"):
        await release_turn(request, tenant, job_id)
    return handle


async def _stored_session(gw: Gateway, key: str) -> SessionStatus:
    """The session of ``key``, or 404 when nothing of it is stored (for its tenant)."""
    status = await gw.run(read_session, gw.coordinator.client, gw.keyspace, key)
    if not status.exists:
        raise RequestRefused(f"no session {status.name!r} is stored", status=404, kind="not_found")
    return status


async def post_message(request: Request) -> Response | HeldStream:
    """Send a message to a session; answer with its reply (JSON) or stream its turn (SSE)."""
    tenant = await caller(request)
    name = request.path_params["key"]
    key = session_key(tenant, name)
    gw = gateway(request)
    body = await read_object(request, limit=options(request).max_body_bytes, allowed=MESSAGE_FIELDS)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidMessage(f"stream must be true or false, got {stream!r}")
    streaming = stream or wants_events(request)
    strategy = body.get("strategy", "enqueue")
    if not isinstance(strategy, str):
        raise InvalidMessage(f"strategy must be a string, got {strategy!r}")
    timeout = turn_timeout(gw, body.get("timeout"))
    after = event_id_or_none(request.headers.get("last-event-id"))
    attrs = {name: body[name] for name in _ATTRS if name in body}
    if streaming:
        attrs[STREAM_ATTR] = 1
    message_id = body["message_id"] if "message_id" in body else uuid.uuid4().hex
    text = body.get("text")
    del body  # what the wait needs was taken out: the parsed body is not held while it waits
    if text is None:
        raise InvalidMessage('text is missing: send {"text": "..."}')
    if not isinstance(text, str):
        raise InvalidMessage(f"text must be a string, got {type(text).__name__}")
    hold = gw.admit()  # a full gateway accepts nothing
    streamed = False
    try:
        handle = await submit_turn(
            request, tenant, key, text, message_id=message_id, strategy=strategy, attrs=attrs
        )
        if text.strip().lower() == "/stop":
            return JSONResponse(reply_body(dict((await gw.run(handle.result, 0.0)).raw)))
        if streaming:
            accepted = {
                "message_id": handle.message_id,
                "session_key": name,
                "worker_id": handle.worker_id,
            }
            streamed = True
            return sse_response(
                gw,
                key,
                handle.message_id,
                after=after,
                timeout=timeout,
                accepted=accepted,
                hold=hold,
            )
        raw = await wait_reply(gw, handle, timeout, request)
        return JSONResponse(reply_body(raw), headers={"X-Message-Id": handle.message_id})
    finally:
        if not streamed:
            hold.release()


async def get_events(request: Request) -> Response | HeldStream:
    """A message's turn events (SSE) from ``Last-Event-ID``: the resume path for EventSource."""
    tenant = await caller(request)
    name = request.path_params["key"]
    key = session_key(tenant, name)
    message_id = request.path_params["message_id"]
    gw = gateway(request)
    after = event_id_or_none(request.headers.get("last-event-id"))
    if not await _message_known(gw, key, message_id):
        raise RequestRefused(
            f"session {name!r} has no message {message_id!r} pending, running or recently answered",
            status=404,
            kind="not_found",
        )
    return sse_response(
        gw, key, message_id, after=after, timeout=gw.settings.turn_timeout, hold=gw.admit()
    )


async def _message_known(gw: Gateway, key: str, message_id: str) -> bool:
    keys = gw.keyspace.session(key)
    pipe = gw.client.pipeline(transaction=False)
    pipe.exists(gw.keyspace.turn_stream(key, message_id))
    pipe.exists(gw.keyspace.reply_list(key, message_id))
    pipe.zscore(keys.pending, job_id_for(gw.keyspace.namespace, key, message_id))
    pipe.hexists(keys.replies, message_id)
    stream, reply, pending, answered = await pipe.execute()
    return bool(stream or reply or pending is not None or answered)


async def get_session(request: Request) -> Response:
    """A session's owner, turns, pending messages and state (``running``, ``queued``, ``idle``).

    ``session_key`` is the name the caller used; ``tenant`` its API key's tenant.
    """
    tenant = await caller(request)
    gw = gateway(request)
    status = await _stored_session(gw, session_key(tenant, request.path_params["key"]))
    state = "running" if status.lease is not None else "queued" if status.pending else "idle"
    return JSONResponse({**status.as_dict(), "session_key": status.name, "state": state})


async def delete_session(request: Request) -> Response:
    """Reset a stored session: ``/new`` runs on its owner after its earlier messages."""
    tenant = await caller(request)
    key = session_key(tenant, request.path_params["key"])
    gw = gateway(request)
    await _stored_session(gw, key)
    hold = gw.admit()
    try:
        handle = await gw.submit(key, "/new", message_id=None, strategy="enqueue", attrs={})
        raw = await wait_reply(gw, handle, gw.settings.turn_timeout, request)
    finally:
        hold.release()
    return JSONResponse(reply_body(raw))


async def interrupt_session(request: Request) -> Response:
    """Stop the stored session's running turn at its next safe point (``/stop``)."""
    tenant = await caller(request)
    key = session_key(tenant, request.path_params["key"])
    gw = gateway(request)
    await read_object(
        request, limit=options(request).max_body_bytes, allowed=frozenset(), required=False
    )
    await _stored_session(gw, key)
    handle = await gw.submit(key, "/stop", message_id=None, strategy="enqueue", attrs={})
    reply = await gw.run(handle.result, 0.0)
    return JSONResponse(
        {"stopped": bool(reply.raw.get("stopped")), "worker_id": reply.worker_id or None}
    )


async def healthz(_request: Request) -> Response:
    """Liveness: the process answers (nothing else is checked)."""
    return JSONResponse({"ok": True})


async def readyz(request: Request) -> Response:
    """Readiness: this gateway has room for a caller, Redis answers and a worker is live.

    The body says how many callers the gateway holds waiting and its limit.
    """
    gw = gateway(request)
    held = {"waiting": gw.waiters.waiting, "max_waiting": gw.waiters.max_waiting}
    if gw.waiters.waiting >= gw.waiters.max_waiting:
        return JSONResponse(
            {
                "ready": False,
                "reason": "gateway full: it holds its limit of waiting callers",
                **held,
            },
            status_code=503,
            headers={"Retry-After": "5"},
        )
    try:
        await gw.ping()
        live = await gw.live_workers()
    except (redis.RedisError, OSError) as exc:
        return JSONResponse(
            {"ready": False, "reason": f"Redis unreachable: {exc}", **held}, status_code=503
        )
    if live == 0:
        return JSONResponse({"ready": False, "reason": "no live worker", **held}, status_code=503)
    return JSONResponse({"ready": True, "live_workers": live, **held})


def routes() -> list[BaseRoute]:
    """The native API's routes (more specific paths first: session keys may hold ``/``)."""
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route(
            "/v1/sessions/{key:session_key}/messages/{message_id}/events",
            get_events,
            methods=["GET"],
        ),
        Route("/v1/sessions/{key:session_key}/messages", post_message, methods=["POST"]),
        Route("/v1/sessions/{key:session_key}/interrupt", interrupt_session, methods=["POST"]),
        Route("/v1/sessions/{key:session_key}", get_session, methods=["GET"]),
        Route("/v1/sessions/{key:session_key}", delete_session, methods=["DELETE"]),
    ]
