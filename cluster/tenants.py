"""Tenants: whose a session is, what a tenant may do at once, what it has used.

An API key belongs to a tenant (configured with its digest, see
``coordinator/http/auth.py``); a session belongs to the tenant that created
it. The HTTP gateway never uses a client's session name as the session key:
it asks :func:`scoped_key` for the tenant's own key, so the same name under
two tenants is two sessions.

Scoped keys: the ``default`` tenant's key is the name itself (sessions made
before tenants existed, the CLI and the Python API keep their keys); any
other tenant's key is ``@<tenant>/<name>``. A tenant name is letters, digits,
``_-`` (:data:`cluster.keys.TENANT_NAME_RE`, so it holds no ``/``), and a
client-chosen name may not start with ``@`` (:func:`check_client_name`):
the mapping is one-to-one, so no name of one tenant produces another
tenant's key.

Limits (requests per minute, turns in flight) are enforced by
``tenant_admit.lua`` on Redis, so every gateway instance applies the same
count. A turn in flight is the turn's job id in the tenant's in-flight set;
the worker removes it when it commits or answers the turn, and an entry a
lost turn leaves behind expires after its lifetime.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from cluster.errors import ConfigError, InvalidMessage
from cluster.keys import TENANT_NAME_RE, Keyspace
from cluster.redis_text import text
from cluster.scripts import ScriptSet

__all__ = [
    "DEFAULT_TENANT",
    "TENANT_MARK",
    "USAGE_TOKEN_FIELDS",
    "Admission",
    "TenantLimits",
    "TenantStore",
    "TenantUsage",
    "check_client_name",
    "check_tenant",
    "client_name",
    "limits_by_tenant",
    "scoped_key",
    "tenant_of",
]

log = logging.getLogger("cluster.tenants")

DEFAULT_TENANT = "default"
"""The tenant of a key configured without one, of ``--anonymous`` callers and of the Python API."""

TENANT_MARK = "@"
"""First character of another tenant's session key; no client session name starts with it."""

USAGE_TOKEN_FIELDS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")
"""Token kinds of a reply's ``usage`` that a tenant's usage adds up."""


def check_tenant(name: Any) -> str:
    """Return ``name`` if it is a valid tenant name.

    Raises:
        InvalidMessage: not 1-32 characters of lowercase letters, digits, ``_-``.
    """
    if not isinstance(name, str) or not TENANT_NAME_RE.match(name):
        raise InvalidMessage(
            f"tenant name must be 1-32 characters of lowercase letters, digits, '_', '-' "
            f"(starting with a letter or digit), got {name!r}"
        )
    return name


def check_client_name(name: str) -> str:
    """Refuse a client-chosen session name that could look like another tenant's key.

    Raises:
        InvalidMessage: the name starts with ``@``.
    """
    if name.startswith(TENANT_MARK):
        raise InvalidMessage(
            f"session names must not start with {TENANT_MARK!r} (it marks a tenant's own "
            f"session keys); got {name[:40]!r}: choose another name"
        )
    return name


def scoped_key(tenant: str, name: str) -> str:
    """The session key of a tenant's session ``name`` (see the module docstring)."""
    check_tenant(tenant)
    check_client_name(name)
    if tenant == DEFAULT_TENANT:
        return name
    return f"{TENANT_MARK}{tenant}/{name}"


def _split(session_key: str) -> tuple[str, str]:
    if session_key.startswith(TENANT_MARK):
        tenant, sep, name = session_key[1:].partition("/")
        if sep and name and TENANT_NAME_RE.match(tenant):
            return tenant, name
    return DEFAULT_TENANT, session_key


def tenant_of(session_key: str) -> str:
    """The tenant a session key belongs to (``default`` for an unscoped key)."""
    return _split(session_key)[0]


def client_name(session_key: str) -> str:
    """The name the session's tenant knows it by."""
    return _split(session_key)[1]


@dataclass(frozen=True)
class TenantLimits:
    """What one tenant may do (0: no limit).

    Attributes:
        requests_per_minute: Requests with the tenant's keys per minute, over
            every gateway (a full minute may come in one burst).
        turns_in_flight: The tenant's turns accepted and not answered yet.
    """

    requests_per_minute: int = 0
    turns_in_flight: int = 0


def limits_by_tenant(text: str) -> dict[str, TenantLimits]:
    """Parse per-tenant limits: ``TENANT=REQUESTS_PER_MINUTE/TURNS_IN_FLIGHT``, comma-separated.

    Example: ``acme=600/8,trial=30/1`` (0: no limit for that tenant).

    Raises:
        ConfigError: an entry is not of that form (the message says which one).
    """
    found: dict[str, TenantLimits] = {}
    for number, raw in enumerate(text.split(","), start=1):
        entry = raw.strip()
        if not entry:
            continue
        tenant, _, values = entry.partition("=")
        rpm, slash, inflight = values.partition("/")
        tenant = tenant.strip()
        if (
            not TENANT_NAME_RE.match(tenant)
            or not slash
            or not rpm.strip().isdigit()
            or not inflight.strip().isdigit()
        ):
            raise ConfigError(
                f"tenant_limits entry {number} must be TENANT=REQUESTS_PER_MINUTE/TURNS_IN_FLIGHT "
                f"with whole numbers (e.g. acme=600/8, 0: no limit), got {entry[:80]!r}"
            )
        found[tenant] = TenantLimits(int(rpm), int(inflight))
    return found


@dataclass(frozen=True)
class Admission:
    """The answer of :meth:`TenantStore.admit`.

    Attributes:
        allowed: Whether the request may go on.
        retry_after: Seconds to wait before retrying (0 when allowed).
        limit: The limit that refused it (``requests_per_minute`` or
            ``turns_in_flight``), empty when allowed.
    """

    allowed: bool
    retry_after: float = 0.0
    limit: str = ""


@dataclass(frozen=True)
class TenantUsage:
    """A tenant's usage since its first turn.

    Attributes:
        tenant: The tenant's name.
        turns: Committed turns.
        tokens: Provider tokens by ``usage`` field (``input_tokens``...).
        cost_usd: Estimated provider cost at list price.
        in_flight: Turns accepted and not answered now (counted only for a
            tenant with a turns-in-flight limit).
    """

    tenant: str
    turns: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    in_flight: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "tenant": self.tenant,
            "turns": self.turns,
            "tokens": dict(self.tokens),
            "cost_usd": round(self.cost_usd, 6),
            "in_flight": self.in_flight,
        }


def _int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


class TenantStore:
    """Tenants' limits and usage in Redis (one per process side; cheap to build)."""

    def __init__(self, client: redis.Redis, keyspace: Keyspace) -> None:
        """Bind to a bytes client (``decode_responses=False``) and the cluster's keyspace."""
        self._client = client
        self._keyspace = keyspace
        self._scripts = ScriptSet(client)

    def admit(
        self, tenant: str, limits: TenantLimits, *, job_id: str | None, lifetime: float
    ) -> Admission:
        """Count one request of ``tenant`` against its limits (refused: nothing counted).

        Args:
            tenant: The caller's tenant.
            limits: The tenant's limits.
            job_id: The job id of the turn the request starts, ``None`` if it starts none.
            lifetime: Seconds after which an in-flight entry nobody removed expires.
        """
        if not limits.requests_per_minute and not (job_id and limits.turns_in_flight):
            return Admission(True)
        ks = self._keyspace
        allowed, retry_ms, limit = self._scripts(
            "tenant_admit",
            [ks.tenant_rate(tenant), ks.tenant_inflight(tenant)],
            [
                limits.requests_per_minute,
                limits.turns_in_flight,
                job_id or "",
                max(1, int(lifetime * 1000)),
            ],
        )
        if int(allowed):
            return Admission(True)
        return Admission(False, retry_after=max(0.001, int(retry_ms) / 1000), limit=text(limit))

    def release(self, tenant: str, job_id: str) -> None:
        """Take a turn out of its tenant's in-flight set (it was not queued, or is answered)."""
        self._client.zrem(self._keyspace.tenant_inflight(tenant), job_id)

    def turn_answered(
        self, session_key: str, job_id: str, *, usage: Mapping[str, Any] | None, cost: float
    ) -> None:
        """A turn of ``session_key`` is answered: release it, add its usage (one round trip).

        Args:
            session_key: The session the turn belongs to (its tenant is derived from it).
            job_id: The turn's job id.
            usage: The reply's token usage (``None``: an error reply, nothing to add).
            cost: The turn's estimated cost in dollars.
        """
        tenant = tenant_of(session_key)
        ks = self._keyspace
        pipe = self._client.pipeline(transaction=False)
        pipe.zrem(ks.tenant_inflight(tenant), job_id)
        if usage is not None:
            key = ks.tenant_usage(tenant)
            pipe.hincrby(key, "turns", 1)
            for name in USAGE_TOKEN_FIELDS:
                count = _int(usage.get(name, 0))
                if count:
                    pipe.hincrby(key, name, count)
            if cost:
                pipe.hincrbyfloat(key, "cost_usd", cost)
            pipe.sadd(ks.tenants(), tenant)
        pipe.execute()

    def usage(self) -> list[TenantUsage]:
        """Every tenant's recorded usage, sorted by name (two round trips)."""
        ks = self._keyspace
        names = sorted(text(name) for name in self._client.smembers(ks.tenants()))
        names = [name for name in names if TENANT_NAME_RE.match(name)]
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(ks.tenant_usage(name))
            pipe.zcard(ks.tenant_inflight(name))
        raw = pipe.execute()
        found = []
        for index, name in enumerate(names):
            fields = {text(k): v for k, v in raw[2 * index].items()}
            found.append(
                TenantUsage(
                    tenant=name,
                    turns=_int(fields.get("turns")),
                    tokens={f: _int(fields.get(f)) for f in USAGE_TOKEN_FIELDS},
                    cost_usd=float(fields.get("cost_usd", 0) or 0),
                    in_flight=int(raw[2 * index + 1]),
                )
            )
        return found
