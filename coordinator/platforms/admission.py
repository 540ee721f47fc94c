"""A platform message counted against its bot's tenant's limits, as an HTTP request is.

A bot's chats belong to its tenant (``telegram_bots``' ``/TENANT``,
``slack_apps``' ``=TENANT``); each new message is one request of that tenant
(``tenant_requests_per_minute``) and, unless it is a command, one turn in
flight (``tenant_turns_in_flight``) until the worker answers it, through the
same ``tenant_admit.lua`` as the HTTP API. Past a limit nothing is accepted
and :class:`~cluster.errors.TenantLimited` says when to retry: the message is
not dropped, the platform delivers it again (a webhook answered 429; a
poller that keeps its offset).
"""

from __future__ import annotations

from cluster.errors import TenantLimited
from cluster.jobs import job_id_for
from coordinator.http.gateway import Gateway
from coordinator.http.tenancy import INFLIGHT_LIFETIME_TURNS
from coordinator.ingress import RESET_COMMANDS

__all__ = ["admit", "release"]


def _is_command(text: str) -> bool:
    command = text.strip().lower()
    return command in RESET_COMMANDS or command == "/stop"


async def admit(gw: Gateway, tenant: str, session_key: str, message_id: str, text: str) -> bool:
    """Count a new message of ``tenant``; whether it was counted as a turn in flight.

    Raises:
        TenantLimited: the tenant is past a limit; nothing was counted.
    """
    limits = gw.limits_for(tenant)
    job_id = (
        None if _is_command(text) else job_id_for(gw.keyspace.namespace, session_key, message_id)
    )
    if not limits.requests_per_minute and not (job_id and limits.turns_in_flight):
        return False
    lifetime = INFLIGHT_LIFETIME_TURNS * gw.settings.turn_timeout
    admission = await gw.run(
        lambda: gw.tenants.admit(tenant, limits, job_id=job_id, lifetime=lifetime)
    )
    if not admission.allowed:
        what = (
            "requests per minute"
            if admission.limit == "requests_per_minute"
            else "turns in flight (accepted, not answered yet)"
        )
        raise TenantLimited(
            f"tenant {tenant!r} of this bot is past its limit of {what}; the message is "
            f"delivered again after {admission.retry_after:.1f}s",
            retry_after=admission.retry_after,
            limit=admission.limit,
        )
    return job_id is not None and bool(limits.turns_in_flight)


async def release(gw: Gateway, tenant: str, session_key: str, message_id: str) -> None:
    """Take back a turn counted by :func:`admit` that no worker will answer."""
    job_id = job_id_for(gw.keyspace.namespace, session_key, message_id)
    await gw.run(gw.tenants.release, tenant, job_id)
