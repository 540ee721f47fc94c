"""A trusted proxy's X-Forwarded-For/-Proto reach the handlers; anyone else's are ignored.

``serve`` runs uvicorn without its proxy-headers middleware and sets
``GatewayApp.forwarded`` instead; the app is driven as ASGI here, as
uvicorn drives it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cluster.settings import ClusterSettings
from coordinator.http.app import build_app
from coordinator.http.forwarded import ForwardedHeaders


async def _peer(request: Request) -> Response:
    client = request.client
    return JSONResponse({"client": client.host if client else None, "scheme": request.url.scheme})


def _ask(peer: str, headers: list[tuple[bytes, bytes]], *, trusted: str | None) -> Any:
    app = build_app(ClusterSettings(namespace="t"), extra_routes=[Route("/peer", _peer)])
    if trusted is not None:
        app.forwarded = ForwardedHeaders(trusted)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/peer",
        "raw_path": b"/peer",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"gw"), *headers],
        "client": (peer, 40000),
        "server": ("127.0.0.1", 8080),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return json.loads(body)


FORWARDED = [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https")]


def test_a_trusted_proxy_forwards_the_client_address_and_scheme() -> None:
    assert _ask("127.0.0.1", FORWARDED, trusted="127.0.0.1,::1") == {
        "client": "203.0.113.7",
        "scheme": "https",
    }


def test_an_untrusted_peer_cannot_claim_another_address() -> None:
    assert _ask("198.51.100.2", FORWARDED, trusted="127.0.0.1,::1") == {
        "client": "198.51.100.2",
        "scheme": "http",
    }


def test_without_forwarded_headers_the_peer_is_the_client() -> None:
    assert _ask("127.0.0.1", [], trusted="127.0.0.1") == {"client": "127.0.0.1", "scheme": "http"}


def test_an_app_not_told_to_trust_anyone_keeps_the_peer() -> None:
    assert _ask("127.0.0.1", FORWARDED, trusted=None) == {"client": "127.0.0.1", "scheme": "http"}
