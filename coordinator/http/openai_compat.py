"""``POST /v1/chat/completions``: the gateway as an OpenAI-compatible endpoint.

Any OpenAI client library talks to the cluster with ``base_url`` pointed at
the gateway and an API key of the gateway. The conversation lives on the
server (the session's history in Redis), so the request's ``messages`` are
read like this:

* the session name comes from the ``X-Session-Key`` header, else the ``user``
  field; a request with neither is refused (400); like every session name it
  is the API key's tenant's own (:mod:`coordinator.http.tenancy`);
* only the **last** message is new: it must be a ``user`` message (text, or
  text parts); earlier messages, which a stateless client resends every
  time, are ignored because the server already has them (a ``system``
  message is ignored too: the cluster config sets the system prompt);
* ``model`` is echoed back but the cluster config decides the model; sampling
  fields (``temperature``...) are accepted and ignored;
* the message id is the ``X-Message-Id`` header if given; otherwise, when the
  request carries earlier messages, a digest of the session key and the whole
  ``messages`` array, so the SDK's automatic retry of the same request is
  answered once instead of running the turn twice; a request with a single
  message gets a fresh id each time (send ``X-Message-Id`` to make its
  retries safe);
* ``X-Strategy`` chooses the double-texting strategy (default ``enqueue``).

``stream: true`` answers in OpenAI's chunk format (``chat.completion.chunk``
objects, then ``data: [DONE]``), with a usage chunk when
``stream_options.include_usage`` is set. Tool activity, which the cluster runs
server-side, is not part of that format; the native SSE API carries it.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from cluster.errors import InvalidMessage
from cluster.stream_events import STREAM_ATTR
from coordinator.http.body import read_json
from coordinator.http.context import gateway, options
from coordinator.http.routes import submit_turn, turn_timeout, wait_reply
from coordinator.http.sse import turn_events
from coordinator.http.tenancy import caller, session_key
from coordinator.http.waiting_asgi import Gone, HeldStream

__all__ = ["chat_completion_routes", "message_text", "openai_usage"]


def message_text(messages: Any) -> str:
    """The new user text of a request: its last message, which must be from the user.

    Raises:
        InvalidMessage: no messages, the last is not a user message, or its
            content is neither a string nor text parts.
    """
    if not isinstance(messages, list) or not messages:
        raise InvalidMessage("messages must be a non-empty array of {role, content} objects")
    last = messages[-1]
    if not isinstance(last, Mapping) or last.get("role") != "user":
        raise InvalidMessage(
            'the last message must be the new user message ({"role": "user", ...}); the '
            "gateway keeps the conversation, earlier messages are ignored"
        )
    content = last.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if (
                not isinstance(part, Mapping)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise InvalidMessage(
                    'only text content parts ({"type": "text", "text": ...}) are accepted'
                )
            parts.append(part["text"])
        return "\n".join(parts)
    raise InvalidMessage("the last message's content must be a string or an array of text parts")


def openai_usage(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """A reply's usage by kind as OpenAI's ``usage`` object (cached tokens in the details)."""
    usage = usage or {}
    cached = int(usage.get("cache_read_tokens", 0))
    prompt = int(usage.get("input_tokens", 0)) + cached + int(usage.get("cache_write_tokens", 0))
    completion = int(usage.get("output_tokens", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _session_name(request: Request, body: Mapping[str, Any]) -> str:
    name = request.headers.get("x-session-key") or body.get("user")
    if not isinstance(name, str) or not name:
        raise InvalidMessage(
            "no session key: send the X-Session-Key header or the user field (the gateway keeps "
            "one conversation per key)"
        )
    return name


def _message_id(request: Request, key: str, messages: list[Any]) -> str:
    given = request.headers.get("x-message-id")
    if given:
        return given
    if len(messages) > 1:
        digest = hashlib.sha256(
            json.dumps([key, messages], sort_keys=True, ensure_ascii=False, default=str).encode(
                "utf-8", "surrogatepass"
            )
        ).hexdigest()
        return f"oai-{digest[:40]}"
    return f"oai-{uuid.uuid4().hex}"


def _chunk(cid: str, model: str, created: int, delta: dict[str, Any], finish: str | None) -> bytes:
    data = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


async def chat_completions(request: Request) -> Response | HeldStream:
    """An OpenAI chat completion whose conversation the cluster keeps."""
    tenant = await caller(request)
    gw = gateway(request)
    body = await read_json(request, limit=options(request).max_body_bytes)
    if not isinstance(body, dict):
        raise InvalidMessage("request body must be a JSON object")
    key = session_key(tenant, _session_name(request, body))
    messages = body.get("messages")
    text = message_text(messages)
    assert isinstance(messages, list)
    model = str(body["model"]) if isinstance(body.get("model"), str) else "agent-cluster"
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidMessage(f"stream must be true or false, got {stream!r}")
    stream_options = body.get("stream_options") or {}
    include_usage = (
        isinstance(stream_options, Mapping) and stream_options.get("include_usage") is True
    )
    strategy = request.headers.get("x-strategy", "enqueue")
    attrs: dict[str, Any] = {"platform": "openai"}
    if stream:
        attrs[STREAM_ATTR] = 1
    message_id = _message_id(request, key, messages)
    del body, messages  # not held while the caller waits: what the wait needs was taken out
    hold = gw.admit()  # a full gateway accepts nothing
    try:
        handle = await submit_turn(
            request, tenant, key, text, message_id=message_id, strategy=strategy, attrs=attrs
        )
    except BaseException:
        hold.release()
        raise
    cid = f"chatcmpl-{hashlib.sha256(message_id.encode('utf-8', 'surrogatepass')).hexdigest()[:24]}"
    created = int(time.time())
    timeout = turn_timeout(gw, None)
    headers = {"X-Message-Id": message_id}
    if not stream:
        try:
            raw = await wait_reply(gw, handle, timeout, request)
        finally:
            hold.release()
        return JSONResponse(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": f"worker:{raw.get('worker_id')}",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": str(raw.get("text", ""))},
                        "finish_reason": "stop",
                    }
                ],
                "usage": openai_usage(raw.get("usage")),
            },
            headers={**headers, "X-Worker-Id": str(raw.get("worker_id"))},
        )

    async def chunks(gone: Gone) -> AsyncGenerator[bytes, None]:
        yield _chunk(cid, model, created, {"role": "assistant", "content": ""}, None)
        streamed = False
        events = turn_events(gw, key, message_id, after=None, timeout=timeout, gone=gone)
        async for event in events:
            if event is None:
                continue
            if event.type == "delta":
                streamed = True
                yield _chunk(
                    cid, model, created, {"content": str(event.data.get("text", ""))}, None
                )
            elif event.type == "final":
                if not streamed:  # a stored reply, or a model that does not stream
                    yield _chunk(
                        cid, model, created, {"content": str(event.data.get("text", ""))}, None
                    )
                yield _chunk(cid, model, created, {}, "stop")
                if include_usage:
                    usage: dict[str, Any] = {
                        "id": cid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": openai_usage(event.data.get("usage")),
                    }
                    yield f"data: {json.dumps(usage, separators=(',', ':'))}\n\n".encode()
            elif event.type == "error":
                yield f"data: {json.dumps({'error': event.data.get('error')})}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return HeldStream(chunks, hold=hold, message_id=message_id)


def chat_completion_routes() -> list[BaseRoute]:
    """The OpenAI-compatible route."""
    return [Route("/v1/chat/completions", chat_completions, methods=["POST"])]
