"""``agent-cluster serve``: the HTTP gateway (native API, SSE, OpenAI-compatible, admin).

API keys are configured as SHA-256 digests only (``AGENT_CLUSTER_API_KEY_SHA256``
or ``AGENT_CLUSTER_API_KEY_SHA256_FILE``), the admin token as
``AGENT_CLUSTER_ADMIN_TOKEN``; see :mod:`coordinator.http.auth`. Without any
API key the gateway refuses to start unless ``--anonymous`` says that every
caller may chat (a trusted local setup).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from cluster.errors import ConfigError
from coordinator.cli.errors import EXIT_CANNOT_LISTEN
from coordinator.cli.settings import (
    CONNECTION_SETTINGS,
    HelpFormatter,
    add_settings_options,
    configure_logging,
    settings_from_args,
)

__all__ = ["register"]

_DESCRIPTION = """\
Serve the gateway's HTTP API: native JSON and SSE, OpenAI-compatible, admin.

API keys are configured as SHA-256 digests only (AGENT_CLUSTER_API_KEY_SHA256,
comma-separated, or AGENT_CLUSTER_API_KEY_SHA256_FILE, one per line); the admin
token as AGENT_CLUSTER_ADMIN_TOKEN. Without any API key the gateway refuses to
start unless --anonymous says that every caller may chat (a trusted local
setup). Exit status 4: the address cannot be listened on (the port is taken).
"""


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the HTTP API until SIGINT/SIGTERM."""
    from coordinator.http import Credentials, HttpOptions, serve
    from coordinator.http.auth import API_KEYS_ENV, API_KEYS_FILE_ENV

    settings = settings_from_args(args)
    configure_logging(settings.log_level)
    credentials = Credentials.from_env(anonymous=args.anonymous)
    if not credentials.api_key_digests and not args.anonymous:
        raise ConfigError(
            f"no API key configured: set {API_KEYS_ENV} or {API_KEYS_FILE_ENV} to SHA-256 "
            'digests of the keys (printf %s "$KEY" | sha256sum), or pass --anonymous for a '
            "trusted local setup"
        )
    if args.anonymous:
        print("warning: --anonymous: every caller may chat without an API key", file=sys.stderr)
    options = HttpOptions(credentials=credentials)
    if args.max_body_bytes is not None:
        if args.max_body_bytes < 1024:
            raise ConfigError(f"--max-body-bytes must be at least 1024, got {args.max_body_bytes}")
        options = HttpOptions(credentials=credentials, max_body_bytes=args.max_body_bytes)
    refused = _cannot_listen(args.host, args.port)
    if refused is not None:
        print(
            f"error: cannot listen on {args.host}:{args.port} ({refused}); stop what uses it "
            "or choose another --port",
            file=sys.stderr,
        )
        return EXIT_CANNOT_LISTEN
    serve(
        settings,
        options=options,
        host=args.host,
        port=args.port,
    )
    return 0


def _cannot_listen(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on right now, or ``None`` when it can.

    Binds and closes a socket the way uvicorn will (``SO_REUSEADDR``), so a
    taken port is one line here instead of uvicorn's startup log.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.create_server((host, port), family=family):
            return None
    except OSError as exc:
        return os.strerror(exc.errno) if exc.errno else str(exc)


def register(sub: Any) -> None:
    """Add ``serve`` to the top-level subparsers."""
    serve = sub.add_parser(
        "serve",
        help="serve the HTTP API (JSON, SSE, OpenAI-compatible, admin)",
        description=_DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on")
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=None,
        help="largest request body (default 2 MiB: an OpenAI client resends the conversation)",
    )
    serve.add_argument(
        "--anonymous", action="store_true", help="accept chat requests without an API key"
    )
    add_settings_options(
        serve,
        (
            *CONNECTION_SETTINGS,
            "turn_timeout",
            "reply_ttl",
            "tenant_requests_per_minute",
            "tenant_turns_in_flight",
            "tenant_limits",
            "http_header_timeout",
            "telegram_bots",
            "slack_apps",
            "telegram_api_url",
            "slack_api_url",
            "platform_group_sessions",
            "platform_busy_strategy",
            "platform_lease_ttl",
        ),
    )
    serve.set_defaults(func=cmd_serve)
