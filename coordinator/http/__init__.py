"""The gateway's HTTP API: native sessions API (JSON and SSE), OpenAI-compatible endpoint, admin.

``build_app`` makes the ASGI app (Starlette); ``serve`` runs it on uvicorn
(``agent-cluster serve``). The README's "HTTP API" section says what each endpoint does.
"""

from coordinator.http.app import build_app, serve
from coordinator.http.auth import Credentials, key_digest
from coordinator.http.context import HttpOptions
from coordinator.http.gateway import Gateway

__all__ = ["Credentials", "Gateway", "HttpOptions", "build_app", "key_digest", "serve"]
