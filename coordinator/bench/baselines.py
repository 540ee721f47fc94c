"""The ways people run agents today, implemented on the same agent and simulator.

Each baseline runs exactly the turn a cluster worker runs (``AIAgent``, the
same tool registry, the same platform and prompt options as
``worker.turns``), so the only difference measured is where the agent lives:

- :class:`InProcessIdeal`: one process, one cached agent per session, no
  Redis (the reference gateway's design; what the cluster should approach);
- :class:`RebuildPerRequest`: one process that builds a new agent for every
  message from the stored history (an OpenAI-compatible server without an
  agent cache);
- stateless workers: rq worker processes behind one shared queue (each turn
  goes to whichever worker is free, i.e. round robin), the session's history
  in Redis, the agent rebuilt on every turn; the job is
  :func:`run_stateless_turn`, the caller :class:`StatelessWorkers`;
- raw rq: a no-op job (``os.getpid``) through one queue and a worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from rq import Queue, get_current_job
from rq.job import Job

from agent import AIAgent
from agent.compression import CompressionSettings
from agent.messages import Message, TurnResult
from agent.tools import ToolEnvironment, ToolRegistry, default_registry
from agent.tools.sandbox_config import SandboxConfig
from cluster.endpoints import NO_KEY
from cluster.keys import Keyspace
from cluster.serialization import MsgpackSerializer, pack, unpack

__all__ = [
    "AgentShape",
    "ModelEndpoint",
    "InProcessIdeal",
    "RebuildPerRequest",
    "StatelessWorkers",
    "TurnFigures",
    "raw_rq_workers",
    "run_stateless_turn",
    "stop_processes",
]

SERIALIZER = "cluster.serialization.MsgpackSerializer"
RESULT_TTL = 600


@dataclass(frozen=True)
class ModelEndpoint:
    """The model every side of a comparison calls: offline (zero latency) or the simulator."""

    provider: str = "offline"
    model: str = "offline-echo"
    base_url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for an rq job argument."""
        return {"provider": self.provider, "model": self.model, "base_url": self.base_url}


@dataclass(frozen=True)
class AgentShape:
    """What a cluster config gives every agent, applied to the baselines' agents too.

    Attributes:
        ephemeral_prompt: ``agent.ephemeral_system_prompt`` (part of the frozen prompt).
        compression: ``model.context_length`` and ``compression.*`` (None: off).
    """

    ephemeral_prompt: str | None = None
    compression: CompressionSettings | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for an rq job argument."""
        compression = self.compression
        return {
            "ephemeral_prompt": self.ephemeral_prompt,
            "compression": None if compression is None else dict(compression.__dict__),
        }

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> AgentShape:
        """From :meth:`as_dict`'s data."""
        compression = data.get("compression")
        return cls(
            ephemeral_prompt=data.get("ephemeral_prompt"),
            compression=None if compression is None else CompressionSettings(**compression),
        )


@dataclass(frozen=True)
class TurnFigures:
    """What one turn reported: tokens by kind and whether an agent was built for it."""

    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    agent_built: bool
    compressed: bool = False

    @classmethod
    def of(
        cls, usage: Mapping[str, Any], *, agent_built: bool, compressed: bool = False
    ) -> TurnFigures:
        """From a reply's or a :class:`~agent.messages.Usage`'s token counts."""
        return cls(
            input_tokens=int(usage.get("input_tokens", 0)),
            cache_read_tokens=int(usage.get("cache_read_tokens", 0)),
            cache_write_tokens=int(usage.get("cache_write_tokens", 0)),
            output_tokens=int(usage.get("output_tokens", 0)),
            agent_built=agent_built,
            compressed=compressed,
        )


def _usage_of(result: TurnResult) -> dict[str, int]:
    usage = result.usage
    return {
        "input_tokens": usage.input_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "output_tokens": usage.output_tokens,
    }


def build_agent(
    endpoint: ModelEndpoint,
    session: str,
    *,
    registry: ToolRegistry,
    tool_env: ToolEnvironment,
    shape: AgentShape,
) -> AIAgent:
    """A new agent as a worker builds one on a cache miss (no frozen prompt: the baselines
    keep none, which is what they are)."""
    return AIAgent(
        model=endpoint.model,
        api_key=None if endpoint.provider == "offline" else NO_KEY,
        base_url=endpoint.base_url,
        provider=endpoint.provider,
        session_id=session,
        platform="http",
        tool_registry=registry,
        tool_env=tool_env,
        skip_context_files=True,
        ephemeral_system_prompt=shape.ephemeral_prompt,
        compression=shape.compression,
    )


def _figures(result: TurnResult, *, built: bool) -> TurnFigures:
    return TurnFigures.of(_usage_of(result), agent_built=built, compressed=bool(result.compressed))


def _tool_env(home: Path) -> ToolEnvironment:
    # As the bench's workers run: `auto` sandbox (bwrap where it works); no turn calls a tool.
    sandbox = SandboxConfig.from_env({"AGENT_CLUSTER_SANDBOX": "auto"})
    return ToolEnvironment.default(home, sandbox=sandbox)


class InProcessIdeal:
    """One process, one cached agent per session, no Redis."""

    name = "in-process ideal"

    def __init__(
        self, endpoint: ModelEndpoint, home: Path, shape: AgentShape | None = None
    ) -> None:
        self._endpoint = endpoint
        self._shape = shape or AgentShape()
        self._registry = default_registry()
        self._env = _tool_env(home)
        self._agents: dict[str, AIAgent] = {}
        self._resume: dict[str, list[Message]] = {}

    def turn(self, session: str, text: str) -> TurnFigures:
        """Run one turn on the session's cached agent (built on its first turn, or after a
        :meth:`reshape` from the transcript its old agent had)."""
        agent = self._agents.get(session)
        built = agent is None
        if agent is None:
            agent = build_agent(
                self._endpoint,
                session,
                registry=self._registry,
                tool_env=self._env,
                shape=self._shape,
            )
            self._agents[session] = agent
        return _figures(agent.run_conversation(text, self._resume.pop(session, None)), built=built)

    def reshape(self, shape: AgentShape) -> None:
        """A pushed config that changes the agents (a new ephemeral prompt): every agent is
        released and rebuilt with ``shape`` on its session's next turn, which goes on from
        the transcript the old agent had (as a gateway goes on from its session store)."""
        self._shape = shape
        self._resume = {session: agent.transcript for session, agent in self._agents.items()}
        self.evict_all()

    def evict_all(self) -> None:
        """A cache-busting config change: every agent is released and rebuilt on next use."""
        for agent in self._agents.values():
            agent.release_clients()
        self._agents.clear()

    def close(self) -> None:
        """Release every agent."""
        self.evict_all()


class RebuildPerRequest:
    """One process, no agent cache: each message builds an agent from the stored history."""

    name = "rebuild per request"

    def __init__(
        self, endpoint: ModelEndpoint, home: Path, shape: AgentShape | None = None
    ) -> None:
        self._endpoint = endpoint
        self._shape = shape or AgentShape()
        self._registry = default_registry()
        self._env = _tool_env(home)
        self._history: dict[str, list[Message]] = {}

    def turn(self, session: str, text: str) -> TurnFigures:
        """Build, run one turn on the stored history, store what it added, let go."""
        history = self._history.setdefault(session, [])
        agent = build_agent(
            self._endpoint, session, registry=self._registry, tool_env=self._env, shape=self._shape
        )
        try:
            result = agent.run_conversation(text, history)
        finally:
            agent.release_clients()
        history.extend(result.new_messages)
        return _figures(result, built=True)

    def reshape(self, shape: AgentShape) -> None:
        """A pushed config: the next agents are built with ``shape`` (nothing is cached)."""
        self._shape = shape

    def evict_all(self) -> None:
        """Nothing is cached, so a config change changes nothing."""

    def close(self) -> None:
        """Nothing to release."""


def run_stateless_turn(
    namespace: str,
    session: str,
    text: str,
    endpoint: Mapping[str, Any],
    shape: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The stateless worker's rq job: load the history from Redis, build, run, append.

    Runs inside ``rq worker`` (SimpleWorker, msgpack serializer), on the
    job's own connection; the history is the session's history list of the
    keyspace (``Keyspace.session(key).history``), one msgpack message per element.
    """
    job = get_current_job()
    if job is None:
        raise RuntimeError("run_stateless_turn runs as an rq job (agent-cluster bench)")
    client = job.connection
    key = Keyspace(namespace).session(session).history
    history: list[Message] = [unpack(item) for item in client.lrange(key, 0, -1)]
    agent = build_agent(
        ModelEndpoint(**endpoint),
        session,
        registry=default_registry(),
        tool_env=ToolEnvironment.default(os.environ.get("AGENT_CLUSTER_HOME")),
        shape=AgentShape.of(shape or {}),
    )
    try:
        result = agent.run_conversation(text, history)
    finally:
        agent.release_clients()
    client.rpush(key, *[pack(message) for message in result.new_messages])
    return {"text": result.text, "usage": _usage_of(result), "compressed": result.compressed}


def raw_rq_workers(
    url: str, queue: str, count: int, env: Mapping[str, str]
) -> list[subprocess.Popen[bytes]]:
    """``count`` rq SimpleWorkers (no fork per job, like a cluster worker) on ``queue``."""
    rq = str(Path(sys.executable).with_name("rq"))
    return [
        subprocess.Popen(
            [
                rq,
                "worker",
                "-w",
                "rq.worker.SimpleWorker",
                "-S",
                SERIALIZER,
                "--url",
                url,
                "--name",
                f"bench-{queue}-{i}",
                queue,
            ],
            env=dict(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for i in range(count)
    ]


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL what is still up after ``grace`` seconds (an idle rq worker
    finishes its blocking dequeue first: minutes)."""
    for proc in procs:
        proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class StatelessWorkers:
    """The caller side of the stateless-worker baseline: one shared rq queue."""

    name = "stateless workers"

    def __init__(
        self,
        client: redis.Redis,
        *,
        queue: str,
        namespace: str,
        endpoint: ModelEndpoint,
        shape: AgentShape | None = None,
    ) -> None:
        self._queue = Queue(queue, connection=client, serializer=MsgpackSerializer)
        self._namespace = namespace
        self._endpoint = endpoint.as_dict()
        self._shape = (shape or AgentShape()).as_dict()

    def submit(self, session: str, text: str) -> Job:
        """Enqueue one turn."""
        return self._queue.enqueue(
            run_stateless_turn,
            self._namespace,
            session,
            text,
            self._endpoint,
            self._shape,
            result_ttl=RESULT_TTL,
        )

    def reshape(self, shape: AgentShape) -> None:
        """A pushed config: the turns submitted from now on build their agents with it."""
        self._shape = shape.as_dict()

    @staticmethod
    def result(job: Job, timeout: float = 120.0) -> TurnFigures:
        """Wait for a turn's result.

        Raises:
            RuntimeError: the job failed or did not finish in ``timeout``.
        """
        # Short blocking reads: one long XREAD BLOCK outlives the client's socket timeout.
        deadline = time.monotonic() + timeout
        outcome = job.latest_result(timeout=1)
        while outcome is None and time.monotonic() < deadline:
            outcome = job.latest_result(timeout=1)
        if outcome is None or outcome.type != outcome.Type.SUCCESSFUL:
            raise RuntimeError(f"stateless turn {job.id} failed: {outcome and outcome.exc_string}")
        value: dict[str, Any] = outcome.return_value or {}
        return TurnFigures.of(
            value.get("usage", {}), agent_built=True, compressed=bool(value.get("compressed"))
        )

    def turn(self, session: str, text: str) -> TurnFigures:
        """Submit one turn and wait for it."""
        return self.result(self.submit(session, text))

    def warm_up(self, workers: int) -> None:
        """Enough concurrent turns that every worker has run one (imports, SDK client)."""
        jobs = [self.submit(f"warm-up-{i}", "warm up") for i in range(3 * workers)]
        for job in jobs:
            self.result(job)
