"""Scheduled messages over HTTP: create, list and cancel the schedules of a session.

=====================================================  ==========================================
``POST /v1/sessions/{key}/schedules``                  ``{"text", "at"}`` (ISO 8601, UTC) or
                                                       ``{"text", "cron"}`` (five fields, UTC);
                                                       201 with the schedule
``GET /v1/sessions/{key}/schedules``                   the session's schedules, soonest first
``DELETE /v1/sessions/{key}/schedules/{id}``           cancel one; 404 if the session has no such
                                                       schedule
=====================================================  ==========================================

``{key}`` is the caller's session name within its tenant
(:mod:`coordinator.http.tenancy`), as for every session route: another
tenant's schedules are neither listed nor cancellable. Bad input (no or both
of ``at`` and ``cron``, a past time, a bad cron expression, a session at its
``schedules_per_session`` limit) is answered 400 with what to fix.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from cluster.errors import RequestRefused
from coordinator.http.body import read_object
from coordinator.http.context import gateway, options
from coordinator.http.tenancy import caller, session_key
from coordinator.schedules import schedule_dict

__all__ = ["SCHEDULE_FIELDS", "schedule_routes"]

SCHEDULE_FIELDS = frozenset({"text", "at", "cron"})
"""Fields of a schedule request body."""


async def create_schedule(request: Request) -> Response:
    """Schedule a message into the caller's session (201 with the schedule)."""
    tenant = await caller(request)
    name = request.path_params["key"]
    key = session_key(tenant, name)
    gw = gateway(request)
    body = await read_object(
        request, limit=options(request).max_body_bytes, allowed=SCHEDULE_FIELDS
    )
    schedules = gw.coordinator.schedules
    made = await gw.run(
        lambda: schedules.add(key, body.get("text"), at=body.get("at"), cron=body.get("cron"))
    )
    return JSONResponse(schedule_dict(made, name=name), status_code=201)


async def list_schedules(request: Request) -> Response:
    """The caller's session's schedules (an empty list when it has none)."""
    tenant = await caller(request)
    name = request.path_params["key"]
    gw = gateway(request)
    found = await gw.run(gw.coordinator.schedules.list, session_key(tenant, name))
    return JSONResponse({"schedules": [schedule_dict(s, name=name) for s in found]})


async def cancel_schedule(request: Request) -> Response:
    """Cancel one schedule of the caller's session (404 when it has no such schedule)."""
    tenant = await caller(request)
    name = request.path_params["key"]
    schedule_id = request.path_params["schedule_id"]
    gw = gateway(request)
    cancelled = await gw.run(
        gw.coordinator.schedules.cancel, session_key(tenant, name), schedule_id
    )
    if not cancelled:
        raise RequestRefused(
            f"session {name!r} has no schedule {schedule_id!r} (list them with GET "
            f"/v1/sessions/{{key}}/schedules)",
            status=404,
            kind="not_found",
        )
    return JSONResponse({"id": schedule_id, "cancelled": True})


def schedule_routes() -> list[BaseRoute]:
    """The schedule routes (mounted before the generic session routes: keys may hold ``/``)."""
    return [
        Route(
            "/v1/sessions/{key:session_key}/schedules/{schedule_id}",
            cancel_schedule,
            methods=["DELETE"],
        ),
        Route("/v1/sessions/{key:session_key}/schedules", create_schedule, methods=["POST"]),
        Route("/v1/sessions/{key:session_key}/schedules", list_schedules, methods=["GET"]),
    ]
