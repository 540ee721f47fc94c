"""What every handler needs from its app: the gateway, the options, the caller's credentials."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from cluster.errors import RequestRefused
from coordinator.http.auth import ADMIN_TOKEN_ENV, API_KEYS_ENV, Credentials
from coordinator.http.gateway import Gateway

__all__ = ["HttpOptions", "gateway", "options", "require_admin", "require_api_key"]

DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class HttpOptions:
    """How the HTTP API behaves (process settings of ``agent-cluster serve``).

    Attributes:
        credentials: The accepted API key digests and the admin token digest.
        max_body_bytes: Largest accepted request body; a larger one is refused
            (413) before it is read whole. An OpenAI client resends the whole
            conversation, so this is larger than one message.
    """

    credentials: Credentials = field(default_factory=Credentials)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


def gateway(request: Request) -> Gateway:
    """The app's gateway."""
    made: Gateway = request.app.state.gateway
    return made


def options(request: Request) -> HttpOptions:
    """The app's options."""
    made: HttpOptions = request.app.state.options
    return made


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def require_api_key(request: Request) -> str:
    """The tenant of the request's API key; refuse (401) a request without an accepted key.

    The key comes as ``Authorization: Bearer KEY`` (what OpenAI clients send)
    or ``X-API-Key: KEY``.
    """
    credentials = options(request).credentials
    key = _bearer(request) or request.headers.get("x-api-key")
    tenant = credentials.tenant_for(key)
    if tenant is not None:
        return tenant
    if not credentials.api_key_digests:
        message = (
            f"this gateway accepts no API key: set {API_KEYS_ENV} (SHA-256 digests) where it runs"
        )
    elif key is None:
        message = "an API key is required: send Authorization: Bearer <key> or X-API-Key"
    else:
        message = "the API key is not accepted"
    raise RequestRefused(message, status=401, kind="unauthorized")


def require_admin(request: Request) -> None:
    """Refuse an admin request without the admin token (401), or when admin is off (403)."""
    credentials = options(request).credentials
    if credentials.admin_digest is None:
        raise RequestRefused(
            f"the admin API is disabled: set {ADMIN_TOKEN_ENV} where the gateway runs",
            status=403,
            kind="admin_disabled",
        )
    if not credentials.admin_ok(_bearer(request)):
        raise RequestRefused(
            "the admin API needs Authorization: Bearer <admin token>",
            status=401,
            kind="unauthorized",
        )
