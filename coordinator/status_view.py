"""Terminal text renderings of :mod:`coordinator.status` (``agent-cluster status``, ``session``).

Tables are Markdown pipe tables with padded columns: readable in a terminal
and pasteable into an issue or a runbook.
"""

from __future__ import annotations

from collections.abc import Sequence

from cluster.tenants import USAGE_TOKEN_FIELDS
from coordinator.status import ClusterStatus, SessionStatus, WorkerStatus

__all__ = ["render_session", "render_status", "table"]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown pipe table with columns padded to their widest cell."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def _mib(size: int) -> str:
    return f"{size / 1024**2:.0f}"


def _worker_row(w: WorkerStatus, config_version: int, registry_generation: int) -> list[object]:
    h = w.health
    memory = "-"
    if h is None:
        cache = running = seen = "-"
    else:
        if h.memory_budget_bytes:
            memory = (
                f"{_mib(h.memory_rss_bytes)}/{_mib(h.memory_budget_bytes)} MiB"
                f" ({h.cache_memory_evictions} shed)"
            )
        cache = f"{h.cache_size}/{h.cache_cap}"
        if h.cache_hit_rate is not None:
            cache += f" ({h.cache_hit_rate:.0%} hits)"
        running = f"{h.turns_running} (+{h.turns_waiting} waiting)"
        stale = h.config_version != config_version or h.registry_generation != registry_generation
        seen = f"v{h.config_version}/g{h.registry_generation}" + (" (behind)" if stale else "")
        if h.config_version_lost:
            seen += f" (lost v{h.config_version_lost})"
    return [
        w.worker_id,
        w.state,
        f"{w.heartbeat_age:.1f}s",
        w.sessions_owned,
        cache,
        memory,
        running,
        w.queued,
        w.in_flight,
        seen,
        f"{w.host}:{w.pid}",
    ]


def render_status(status: ClusterStatus) -> str:
    """The ``agent-cluster status`` text: a summary line, the worker table, dead letters."""
    lines = [
        f"namespace {status.namespace}: config v{status.config_version}, registry generation "
        f"{status.registry_generation}, {len(status.workers)} worker(s), "
        f"{status.queued} turn(s) queued, {status.in_flight} in flight, "
        f"{status.dead_letters} dead letter(s)",
        "",
    ]
    if status.config_version_lost:
        lines[1:1] = [
            f"WARNING: Redis lost config v{status.config_version_lost} (it came back empty or "
            "old); workers run what it holds now: push the cluster config again"
        ]
    if status.workers:
        lines.append(
            table(
                [
                    "worker",
                    "state",
                    "heartbeat",
                    "sessions",
                    "cache (hit rate)",
                    "memory (RSS/budget)",
                    "turns running",
                    "queued",
                    "in flight",
                    "config/registry seen",
                    "host:pid",
                ],
                [
                    _worker_row(w, status.config_version, status.registry_generation)
                    for w in status.workers
                ],
            )
        )
    else:
        lines.append("no worker registered: start one with `agent-cluster worker`")
    if status.tenants:
        lines.append("")
        lines.append(
            table(
                [
                    "tenant",
                    "turns",
                    "in flight",
                    "input",
                    "cache read",
                    "cache write",
                    "output",
                    "est. cost $",
                ],
                [
                    [
                        t.tenant,
                        t.turns,
                        t.in_flight,
                        *(t.tokens.get(name, 0) for name in USAGE_TOKEN_FIELDS),
                        f"{t.cost_usd:.4f}",
                    ]
                    for t in status.tenants
                ],
            )
        )
    for entry in status.recent_dead_letters:
        lines.append(
            f"dead letter: {entry.get('job')} from {entry.get('worker')}: {entry.get('reason')}"
        )
    return "\n".join(lines)


def render_session(session: SessionStatus) -> str:
    """The ``agent-cluster session KEY`` text, one fact per line."""
    if not session.exists:
        return f"session {session.session_key}: nothing stored (never seen, or reset and idle)"
    if session.owner is None:
        owner = "none (assigned at its next message)"
    else:
        owner = (
            f"{session.owner} (epoch {session.epoch}, {'live' if session.owner_alive else 'dead'})"
        )
    if session.cached_on_owner is None:
        cached = "unknown (the owner wrote no health record)"
    else:
        cached = "yes" if session.cached_on_owner else "no (built at its next turn)"
    lease = session.lease
    running = (
        "none"
        if lease is None
        else f"{lease.worker_id} (token {lease.token}, expires in {lease.ttl:.1f}s)"
    )
    lines = [
        f"session {session.session_key}",
        f"  tenant:         {session.tenant} (its API keys call it {session.name!r})",
        f"  owner:          {owner}",
        f"  turns:          {session.turns} committed, {session.history_messages} messages in "
        "history",
        f"  lease:          {running}",
        f"  cached agent:   {cached}",
        f"  pending:        {len(session.pending)} message(s)",
    ]
    for turn in session.pending:
        where = turn.queued_on or "?"
        lines.append(f"    #{turn.sequence} {turn.job_id} on {where}")
    return "\n".join(lines)
