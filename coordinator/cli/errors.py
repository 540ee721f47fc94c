"""One line a person can act on, for each mistake a command line user can make.

:func:`explain` turns an exception that reached the top of ``agent-cluster``
into that line (Redis unreachable, credentials refused, a database number the
server does not have, a project error); :func:`coordinator.cli.main` prints it and
exits non-zero instead of showing a traceback.
"""

from __future__ import annotations

import re

import redis

from cluster.errors import AgentClusterError
from cluster.settings import ClusterSettings, redact_url

__all__ = ["EXIT_NO", "EXIT_USAGE", "EXIT_UNAVAILABLE", "EXIT_CANNOT_LISTEN", "explain"]

EXIT_NO = 1
"""The answer is no: an unhealthy worker, an unknown session, an unfinished drain."""
EXIT_USAGE = 2
"""A mistake in what was asked (bad config, unknown worker, bad setting)."""
EXIT_UNAVAILABLE = 3
"""Redis could not be used (unreachable, refused credentials, no such database)."""
EXIT_CANNOT_LISTEN = 4
"""``serve`` cannot listen on its address (the port is taken, or not allowed)."""

_DB_RE = re.compile(r"/(\d+)(?:\?|$)")


def _url(settings: ClusterSettings | None) -> str:
    return settings.redacted_url() if settings is not None else "the configured Redis"


def explain(exc: BaseException, settings: ClusterSettings | None) -> tuple[str, int] | None:
    """The one-line message and exit code for ``exc``, or ``None`` for a real bug.

    Args:
        exc: What was raised.
        settings: The settings in effect, if resolved (to name the Redis URL).
    """
    where = _url(settings)
    fix_url = "fix --redis-url, AGENT_CLUSTER_REDIS_URL or the settings file"
    if isinstance(exc, AgentClusterError):
        return f"error: {exc}", EXIT_USAGE
    if isinstance(exc, redis.AuthenticationError) or (
        isinstance(exc, redis.ResponseError)
        and str(exc).startswith(("WRONGPASS", "NOAUTH", "NOPERM"))
    ):
        return (
            f"error: Redis at {where} refused the credentials ({_first_line(exc)}); "
            f"check the user and password in the URL ({fix_url})",
            EXIT_UNAVAILABLE,
        )
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return (
            f"error: cannot reach Redis at {where} ({_first_line(exc)}); is redis-server "
            f"running there? ({fix_url})",
            EXIT_UNAVAILABLE,
        )
    if isinstance(exc, redis.ResponseError) and "DB index is out of range" in str(exc):
        match = _DB_RE.search(settings.redis_url) if settings is not None else None
        db = match.group(1) if match else "?"
        return (
            f"error: Redis at {where} has no database {db} (a default server has 0-15); "
            f"fix the /{db} at the end of the URL ({fix_url})",
            EXIT_UNAVAILABLE,
        )
    if isinstance(exc, redis.RedisError):
        return f"error: Redis at {where} answered: {_first_line(exc)}", EXIT_UNAVAILABLE
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    # redis-py may quote the URL it was given; never show a password.
    return redact_url(text[0]) if text else type(exc).__name__
