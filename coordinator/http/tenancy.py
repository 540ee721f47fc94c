"""What a caller's tenant may reach and do: its own sessions, within its limits.

Every chat handler starts with :func:`caller`: the API key's tenant, after
the tenant's limits admitted the request (``tenant_admit.lua`` on Redis, so
every gateway instance counts the same requests). A session name from the
client becomes the tenant's own session key with :func:`session_key`
(:func:`cluster.tenants.scoped_key`); a session another tenant made is then
simply not found, exactly as one that does not exist.
"""

from __future__ import annotations

from starlette.requests import Request

from cluster.errors import TenantLimited
from cluster.tenants import TenantLimits, check_client_name, scoped_key
from coordinator.http.context import gateway, require_api_key
from coordinator.validation import validate_session_key

__all__ = ["INFLIGHT_LIFETIME_TURNS", "admit_turn", "caller", "release_turn", "session_key"]

# An in-flight entry the worker never removed (its job was lost) expires
# after this many turn timeouts: a queued turn may wait behind earlier ones.
INFLIGHT_LIFETIME_TURNS = 2


def _refusal(tenant: str, limit: str, retry_after: float) -> TenantLimited:
    what = (
        "requests per minute"
        if limit == "requests_per_minute"
        else "turns in flight (accepted, not answered yet)"
    )
    return TenantLimited(
        f"tenant {tenant!r} is past its limit of {what}; retry after {retry_after:.1f}s",
        retry_after=retry_after,
        limit=limit,
    )


async def caller(request: Request) -> str:
    """The tenant of the request's API key, once its requests-per-minute limit admitted it.

    Raises:
        RequestRefused: no accepted API key (401).
        TenantLimited: the tenant is past its requests per minute (429).
    """
    tenant = require_api_key(request)
    gw = gateway(request)
    limits = gw.limits_for(tenant)
    if limits.requests_per_minute:
        admission = await gw.run(
            lambda: gw.tenants.admit(tenant, limits, job_id=None, lifetime=gw.settings.turn_timeout)
        )
        if not admission.allowed:
            raise _refusal(tenant, admission.limit, admission.retry_after)
    return tenant


async def admit_turn(request: Request, tenant: str, job_id: str) -> None:
    """Count a turn the request is about to submit against the tenant's turns in flight.

    Raises:
        TenantLimited: the tenant has its limit of turns in flight (429).
    """
    gw = gateway(request)
    limits = gw.limits_for(tenant)
    if not limits.turns_in_flight:
        return
    only_turns = TenantLimits(turns_in_flight=limits.turns_in_flight)
    admission = await gw.run(
        lambda: gw.tenants.admit(
            tenant,
            only_turns,
            job_id=job_id,
            lifetime=INFLIGHT_LIFETIME_TURNS * gw.settings.turn_timeout,
        )
    )
    if not admission.allowed:
        raise _refusal(tenant, admission.limit, admission.retry_after)


async def release_turn(request: Request, tenant: str, job_id: str) -> None:
    """Take back a turn counted by :func:`admit_turn` that no worker will answer."""
    gw = gateway(request)
    if gw.limits_for(tenant).turns_in_flight:
        await gw.run(gw.tenants.release, tenant, job_id)


def session_key(tenant: str, name: object) -> str:
    """The tenant's own session key for a client's session name (validated).

    Raises:
        InvalidMessage, PayloadTooLarge: the name is not a valid session name
            (empty, control characters, too long, or starting with ``@``).
    """
    return scoped_key(tenant, check_client_name(validate_session_key(name)))
