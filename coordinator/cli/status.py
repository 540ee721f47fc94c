"""``agent-cluster status``, ``session KEY`` and ``health WORKER``: the cluster seen from Redis.

The reading lives in :mod:`coordinator.status` (imported when a command
runs, so ``cluster`` itself imports nothing above it). ``health`` is a deploy
probe: exit 0 and one line when the worker is registered, beating, fresh and
active; exit 1 and one line saying why otherwise. ``session KEY`` exits 1 for
a session with nothing stored, as the HTTP API answers 404 for it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from cluster.connection import connect
from cluster.keys import Keyspace
from coordinator.cli.errors import EXIT_NO
from coordinator.cli.settings import (
    CONNECTION_SETTINGS,
    HelpFormatter,
    add_settings_options,
    settings_from_args,
)

__all__ = ["register"]

T = TypeVar("T")


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _read(args: argparse.Namespace, reader: Callable[[redis.Redis, Keyspace], T]) -> T:
    """Run one read of the cluster on a connection of the command's settings."""
    settings = settings_from_args(args)
    client = connect(settings.redis_url)
    try:
        return reader(client, Keyspace(settings.namespace))
    finally:
        client.close()


def cmd_status(args: argparse.Namespace) -> int:
    """Print the worker table, config version, queue depths and dead letters."""
    from coordinator.status import read_status
    from coordinator.status_view import render_status

    status = _read(args, read_status)
    if args.json:
        _print_json(status.as_dict())
    else:
        print(render_status(status))
    return 0


def cmd_session(args: argparse.Namespace) -> int:
    """Print one session's owner, turns, lease, pending messages and cache presence.

    Exits 1 when nothing is stored for the key (the HTTP API's 404).
    """
    from coordinator.status import read_session
    from coordinator.status_view import render_session

    session = _read(args, lambda client, keys: read_session(client, keys, args.key))
    if args.json:
        _print_json(session.as_dict())
    else:
        print(render_session(session))
    return 0 if session.exists else EXIT_NO


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 if the worker is healthy, 1 otherwise, with a one-line reason either way."""
    from coordinator.status import check_health

    verdict = _read(args, lambda client, keys: check_health(client, keys, args.worker))
    if args.json:
        _print_json(verdict.as_dict())
    else:
        print(verdict.reason)
    return 0 if verdict.healthy else EXIT_NO


def register(sub: Any) -> None:
    """Add ``status``, ``session`` and ``health`` to the top-level subparsers."""
    status = sub.add_parser(
        "status",
        help="workers, sessions owned, caches, queues, dead letters",
        formatter_class=HelpFormatter,
    )
    status.add_argument("--json", action="store_true", help="JSON for scripts")
    add_settings_options(status, CONNECTION_SETTINGS)
    status.set_defaults(func=cmd_status)

    session = sub.add_parser(
        "session",
        help="one session: owner, turns, pending messages, lease, cached or not",
        formatter_class=HelpFormatter,
    )
    session.add_argument("key", help="the session key")
    session.add_argument("--json", action="store_true", help="JSON for scripts")
    add_settings_options(session, CONNECTION_SETTINGS)
    session.set_defaults(func=cmd_session)

    health = sub.add_parser(
        "health",
        help="deploy probe: exit 0 when the worker is registered, beating and active",
        formatter_class=HelpFormatter,
    )
    health.add_argument("worker", help="the worker id")
    health.add_argument("--json", action="store_true", help="the verdict and record as JSON")
    add_settings_options(health, CONNECTION_SETTINGS)
    health.set_defaults(func=cmd_health)
