"""What a turn talks to: :class:`TurnServices`, built once per worker process.

:class:`worker.process.WorkerProcess` builds it; :class:`worker.turns.TurnRunner`
and :class:`worker.turn_answers.TurnAnswers` use it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis

from agent import AIAgent
from agent.tools import ToolEnvironment, ToolRegistry
from cluster.keys import Keyspace
from cluster.leases import RedisLeaseStore
from cluster.placement import Placement
from cluster.session_store import RedisSessionStore
from cluster.settings import DEFAULT_COLLECT_WINDOW, DEFAULT_MODEL_CALL_DEADLINE
from cluster.transport import ReplyChannel, TurnQueue
from worker.background_notices import BackgroundNotices
from worker.cache import AgentCache
from worker.config_view import ConfigView
from worker.lease_keeper import LeaseKeeper
from worker.metrics import WorkerMetrics
from worker.workspace_handoff import WorkspaceHandoff


@dataclass
class TurnServices:
    """Everything a turn talks to (built once per worker process)."""

    worker_id: str
    client: redis.Redis
    keyspace: Keyspace
    leases: RedisLeaseStore
    sessions: RedisSessionStore
    replies: ReplyChannel
    cache: AgentCache[AIAgent]
    config: ConfigView
    lease_keeper: LeaseKeeper
    tool_env: ToolEnvironment
    tool_registry: ToolRegistry
    queue: TurnQueue
    placement: Placement
    lease_ttl: float
    reply_ttl: float
    workspaces: WorkspaceHandoff
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    model_call_deadline: float = DEFAULT_MODEL_CALL_DEADLINE
    collect_window: float = DEFAULT_COLLECT_WINDOW
    notices: BackgroundNotices | None = None
