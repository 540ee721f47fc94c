"""Reading a request body: the content type checked, the size bounded before it is all read.

The ``Content-Length`` header is checked first; a body sent without one (chunked)
is counted while it arrives and refused the moment it passes the limit, so an
oversized upload never sits in memory whole.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request

from cluster.errors import InvalidMessage, PayloadTooLarge, RequestRefused

__all__ = ["read_body", "read_json", "read_object"]


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, *, limit: int) -> bytes:
    """Read the whole body, refusing one larger than ``limit`` bytes before reading it all.

    Raises:
        PayloadTooLarge: the declared or actual size passes the limit.
        InvalidMessage: the Content-Length header is not a number, or the client went away.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise InvalidMessage(f"Content-Length must be a number of bytes, got {declared!r}")
        if int(declared) > limit:
            raise PayloadTooLarge(
                f"request body is {int(declared)} bytes, more than the limit of {limit}"
            )
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is more than the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise InvalidMessage("the client closed the connection before sending its body") from None
    return b"".join(chunks)


async def read_json(request: Request, *, limit: int) -> Any:
    """Read a JSON body (``Content-Type: application/json``), bounded by ``limit`` bytes.

    Raises:
        RequestRefused: 415 when the content type is not JSON.
        PayloadTooLarge: too big.
        InvalidMessage: not UTF-8 JSON (the message says where it broke).
    """
    media = _media_type(request)
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise RequestRefused(
            f"Content-Type must be application/json, got {media or 'none'!r}",
            status=415,
            kind="unsupported_media_type",
        )
    raw = await read_body(request, limit=limit)
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidMessage(f"request body is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InvalidMessage(
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidMessage("request body is JSON nested too deeply") from None


async def read_object(
    request: Request, *, limit: int, allowed: frozenset[str], required: bool = True
) -> dict[str, Any]:
    """Read a JSON object body whose keys are all in ``allowed``.

    Args:
        request: The request.
        limit: Largest accepted body, in bytes.
        allowed: The accepted field names.
        required: Whether a request without a body is refused (else it reads as ``{}``).

    Raises:
        InvalidMessage: not an object, or an unknown field (named with the allowed ones).
    """
    if not required and not _has_body(request):
        return {}
    value = await read_json(request, limit=limit)
    if not isinstance(value, dict):
        raise InvalidMessage(f"request body must be a JSON object, got a JSON {_kind(value)}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise InvalidMessage(f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    return value


def _has_body(request: Request) -> bool:
    if request.headers.get("content-length") not in (None, "0"):
        return True
    return "transfer-encoding" in request.headers or bool(_media_type(request))


def _kind(value: Any) -> str:
    names = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
