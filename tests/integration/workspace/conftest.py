"""Fixtures of the workspace hand-over tests: worker processes that stand for separate hosts.

Each worker gets an ``AGENT_CLUSTER_HOME`` of its own (:func:`start_host`), so
a file its terminal tool writes exists only on its "disk" unless the
hand-over carries it.
"""

from __future__ import annotations

from pathlib import Path

from agent.tools.state import safe_task_id
from tests.support.fleet import Fleet
from tests.support.fleet_fixtures import workers

__all__ = ["home_of", "start_host", "workers", "workspace_of"]


def home_of(fleet: Fleet, worker_id: str) -> Path:
    """The home directory (the "host disk") of one worker."""
    return fleet.tmp / f"home-{worker_id}"


def workspace_of(fleet: Fleet, worker_id: str, session: str) -> Path:
    """Where a session's workspace lives on one worker's disk."""
    return home_of(fleet, worker_id) / "sandboxes" / safe_task_id(session)


def start_host(fleet: Fleet, worker_id: str, **env: str) -> None:
    """Start a worker with a home of its own (and extra ``AGENT_CLUSTER_*`` variables)."""
    fleet.start(worker_id, env={"AGENT_CLUSTER_HOME": str(home_of(fleet, worker_id)), **env})
