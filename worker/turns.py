"""One turn of one session on this worker: lease, agent, run, fenced commit, reply.

The order of a turn:

1. begin the turn (one script, ``turn_begin.lua``): a message already answered
   runs nothing (its reply was delivered with its commit); a session owned by
   another worker gets its job handed on; a job that is not its session's
   earliest pending one, or whose session's lease another worker holds, is
   deferred (the executor retries it with backoff, holding no thread);
   otherwise the lease is taken, and the same round trip returns the config
   version and registry generation (so a stale agent can never run) and the
   session's committed-turn count;
2. the lease keeper keeps the lease alive from here on;
3. check out the agent from the local cache (a hit needs the same signature and
   the same committed-turn count); only a miss reads the session (history,
   frozen prompt) and builds a new agent, from the session's frozen prompt
   when it was frozen under the same signature;
4. run the turn with a tool-state store fenced by the lease;
5. one fenced script ends the turn: commit history + reply, deliver the reply
   to the caller, release the lease and complete the rq job (a worker that
   lost its lease writes nothing).

On a cache hit that is two round trips to Redis besides the claim.

A Redis error anywhere defers the turn (retried once Redis answers; a turn
that committed is then found answered); a lost lease defers it too (the turn
start then finds where it belongs). A failing turn is answered with a clear
error reply.

Around the agent's run, :mod:`worker.workspace_handoff` restores the session's
workspace if the session moved here (the agent is told what could not follow)
and, before the commit, snapshots it if the turn changed it (fenced by the lease).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import redis

from agent import AIAgent
from agent.providers import DEFAULT_MAX_TOKENS, RetryPolicy
from agent.tools import ToolEnvironment, ToolRegistry
from agent.turn_notice import with_notice
from cluster.errors import (
    AgentClusterError,
    LeaseLost,
    NoLiveWorkers,
    TurnDeferred,
    TurnHandedOff,
)
from cluster.keys import Keyspace
from cluster.leases import Lease, RedisLeaseStore, TurnStart, TurnStartStatus
from cluster.placement import Placement
from cluster.session_store import RedisSessionStore, SessionSnapshot, StoredPrompt
from cluster.settings import DEFAULT_MODEL_CALL_DEADLINE
from cluster.tenants import TenantStore
from cluster.tool_state import RedisToolStateStore
from cluster.transport import ReplyChannel, TurnJob, TurnQueue
from worker.cache import AgentCache, EvictionCause
from worker.config_view import ConfigView
from worker.lease_keeper import LeaseKeeper
from worker.metrics import WorkerMetrics, estimated_cost
from worker.streaming import open_turn_events
from worker.workspace_handoff import WorkspaceHandoff

log = logging.getLogger("worker.turns")

# Interrupt requests kept for turns that have not reached their model loop yet.
_PENDING_INTERRUPTS = 1024
# How long an interrupt waits for its turn's model loop to start (seconds).
_INTERRUPT_WAIT = 30.0
_INTERRUPT_POLL = 0.005
# What the turn's reply says stopped it, by the mode of the interrupt event.
_STOP_REASONS = {
    "stop": "stopped by /stop (the chat command or POST /v1/sessions/{key}/interrupt)",
    "interrupt": "interrupted by a newer message (double texting: interrupt)",
    "rollback": "rolled back by a newer message (double texting: rollback)",
}

# Backoff of a deferred turn: first delay, growth, cap (seconds).
RETRY_FIRST = 0.05
RETRY_CAP = 1.0
REDIS_RETRY_FIRST = 0.2
REDIS_RETRY_CAP = 2.0


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


class TurnRunner:
    """Runs turn jobs; :meth:`run` is the executor's handler."""

    def __init__(self, services: TurnServices) -> None:
        self.s = services
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._running: dict[str, tuple[int, AIAgent]] = {}  # session -> (lease token, agent)
        # (session, lease token) -> reason: interrupts that arrived before their turn ran
        self._pending_interrupts: dict[tuple[str, int], str] = {}
        self._cut_off = threading.Event()
        self._tenants = TenantStore(services.client, services.keyspace)

    def run(self, job: TurnJob) -> None:
        """Run one turn; its reply (or a clear error) reaches the caller.

        Raises:
            TurnDeferred: the turn cannot start yet or Redis failed: retry later.
            TurnHandedOff: the job belongs to another worker (moved or to move).
        """
        s = self.s
        job_id = s.queue.job_id(job)
        try:
            reply = self._run_leased(job, job_id)
        except TurnDeferred as exc:
            s.metrics.turn_raised(exc)
            raise
        except TurnHandedOff as exc:  # its backoff count goes with it
            s.metrics.turn_raised(exc)
            with self._lock:
                self._attempts.pop(job_id, None)
            raise
        except LeaseLost as exc:
            s.metrics.turn_raised(exc)
            log.warning("turn %s of %s lost its lease: %s", job.message_id, job.session_key, exc)
            s.cache.evict(job.session_key)
            raise self._defer(job_id, "its lease was lost", redis_error=False) from None
        except redis.RedisError as exc:
            s.metrics.turn_outcome("deferred")
            hint = (
                " (every connection of the worker's pool was busy: the turn is retried; "
                "a worker sizes its pools from --concurrency)"
                if "No connection available" in str(exc)
                else ""
            )
            log.warning(
                "turn %s of %s: Redis failed: %s%s", job.message_id, job.session_key, exc, hint
            )
            raise self._defer(job_id, f"Redis failed ({exc})", redis_error=True) from None
        except AgentClusterError as exc:
            reply = self._error_reply(job, exc)
        except Exception as exc:  # a bug must still answer the caller, not hang it
            log.exception("turn %s of %s failed", job.message_id, job.session_key)
            reply = self._error_reply(job, exc)
        with self._lock:
            self._attempts.pop(job_id, None)
        if reply is not None:
            s.metrics.turn_outcome("error")
            try:
                s.replies.push(job.session_key, job.message_id, reply)
            except redis.RedisError as exc:
                raise self._defer(job_id, f"its error reply could not be pushed ({exc})", redis_error=True) from None
            self._tenant_answered(job, job_id, usage=None, cost=0.0)

    def cut_off(self) -> int:
        """Interrupt every running turn for a hand-over (drain past its timeout).

        The interrupted turns commit nothing and are not completed here: their
        jobs stay on the in-flight list, which the drain hands on.

        Returns:
            How many turns were interrupted.
        """
        self._cut_off.set()
        with self._lock:
            agents = [agent for _token, agent in self._running.values()]
        for agent in agents:
            agent.interrupt("worker draining: turn handed to another worker")
        return len(agents)

    def _defer(self, job_id: str, why: str, *, redis_error: bool) -> TurnDeferred:
        with self._lock:
            attempt = self._attempts.get(job_id, 0)
            self._attempts[job_id] = attempt + 1
        first, cap = (REDIS_RETRY_FIRST, REDIS_RETRY_CAP) if redis_error else (RETRY_FIRST, RETRY_CAP)
        return TurnDeferred(f"turn {job_id} deferred: {why}", delay=min(cap, first * 2**attempt))

    def _tenant_answered(
        self, job: TurnJob, job_id: str, *, usage: dict[str, Any] | None, cost: float
    ) -> None:
        """Release the turn from its tenant's turns in flight and add its usage (best effort).

        The reply is already committed or delivered: a Redis error here only
        leaves the in-flight entry to expire and this turn out of the usage.
        """
        try:
            self._tenants.turn_answered(job.session_key, job_id, usage=usage, cost=cost)
        except redis.RedisError as exc:
            log.warning("turn %s of %s: tenant usage not recorded: %s", job.message_id, job.session_key, exc)

    def _error_reply(self, job: TurnJob, exc: BaseException) -> dict[str, Any]:
        return {
            "ok": False,
            "message_id": job.message_id,
            "worker_id": self.s.worker_id,
            "error": f"{type(exc).__name__}: {exc}",
        }

    def _begin(self, job: TurnJob, job_id: str) -> TurnStart | None:
        """Take the lease, or decide what else happens to the job (``None``: nothing to run)."""
        s = self.s
        if self._cut_off.is_set():
            raise TurnHandedOff(f"worker {s.worker_id} is handing its turns over")
        start = s.leases.begin_turn(
            job.session_key,
            s.worker_id,
            s.lease_ttl,
            job_id=job_id,
            message_id=job.message_id,
            depth=_depth(job),
        )
        status = start.status
        if status is TurnStartStatus.ACQUIRED:
            s.metrics.leases_acquired.inc()
            return start
        if status in (TurnStartStatus.ANSWERED, TurnStartStatus.NOT_PENDING):
            return None
        if status is TurnStartStatus.NOT_OWNER:
            owner = start.other
            if not owner or owner == s.worker_id:
                try:
                    owner = s.placement.assign(job.session_key)
                except NoLiveWorkers:
                    raise self._defer(job_id, "no worker can own its session", redis_error=False) from None
            if owner == s.worker_id:
                raise self._defer(job_id, "its session was just assigned here", redis_error=False)
            log.info("turn %s of %s: session owned by %s; handing it on", job.message_id, job.session_key, owner)
            raise TurnHandedOff(f"session {job.session_key!r} is owned by {owner}", to_worker=owner)
        if status is TurnStartStatus.NOT_HEAD:
            if s.queue.clear_stale_pending(job.session_key, start.other):
                raise self._defer(job_id, "a stale earlier entry was cleared", redis_error=False)
            raise self._defer(job_id, f"earlier message {start.other} runs first", redis_error=False)
        raise self._defer(job_id, f"worker {start.other} runs a turn of its session", redis_error=False)

    def _run_leased(self, job: TurnJob, job_id: str) -> dict[str, Any] | None:
        s = self.s
        start = self._begin(job, job_id)
        if start is None:
            s.metrics.turn_outcome("answered")
            self._tenant_answered(job, job_id, usage=None, cost=0.0)
            return None
        lease = start.lease
        assert lease is not None
        s.lease_keeper.hold(lease)
        try:
            if s.config.refresh(lease.config_version, lease.registry_generation):
                s.cache.clear()
            if job.attrs.get("command") == "reset":
                self._reset(job, job_id, lease)
                s.metrics.turn_outcome("reset")
                return None
            return self._run_with_agent(
                job, job_id, lease, start.committed_turns, start.workspace_digest
            )
        finally:
            s.lease_keeper.drop(lease)
            if job.claim is None or not job.claim.completed:  # else the commit released it
                try:
                    s.leases.release(lease)
                except redis.RedisError as exc:  # our next attempt takes it over; others wait the TTL
                    log.warning("could not release lease of %s: %s", job.session_key, exc)

    def _run_with_agent(
        self, job: TurnJob, job_id: str, lease: Lease, committed: int, workspace: str | None
    ) -> dict[str, Any] | None:
        s = self.s
        profile = s.config.profile
        user_id = job.attrs.get("user_id")
        signature = profile.signature(s.environ, user_id=user_id)
        fenced_env = s.tool_env.with_state(RedisToolStateStore(s.client, s.keyspace, lease=lease))
        # The session is read only when this worker has no current agent for it.
        loaded: list[SessionSnapshot] = []

        def snapshot() -> SessionSnapshot:
            if not loaded:
                loaded.append(s.sessions.load(job.session_key))
            return loaded[0]

        def stored_prompt() -> StoredPrompt | None:
            stored = snapshot().frozen_prompt
            return stored if stored is not None and stored.signature == signature else None

        def build() -> AIAgent:
            s.metrics.agents_built.inc()
            frozen = stored_prompt()
            return AIAgent(
                model=profile.model,
                api_key=profile.api_key(s.environ),
                base_url=profile.base_url,
                provider=profile.provider,
                api_mode=profile.api_mode,
                session_id=job.session_key,
                platform=str(job.attrs.get("platform", "http")),
                toolsets=list(profile.toolsets),
                ephemeral_system_prompt=profile.ephemeral_prompt,
                max_iterations=profile.max_iterations,
                max_tokens=profile.max_tokens or DEFAULT_MAX_TOKENS,
                user_id=user_id,
                fallback=profile.fallback_runtime(s.environ),
                retry_policy=RetryPolicy(deadline=s.model_call_deadline),
                tool_registry=s.tool_registry,
                tool_env=fenced_env,
                skip_context_files=True,
                frozen_prompt={
                    "system_prompt": frozen.system_prompt,
                    "tool_schemas": frozen.tool_schemas,
                }
                if frozen is not None
                else None,
            )

        events = open_turn_events(
            s.client, s.keyspace, job, worker_id=s.worker_id, fence=lease.token, ttl=s.reply_ttl
        )
        notice = s.workspaces.before_turn(lease, workspace)  # the session may have moved here
        if notice:
            job = replace(job, text=with_notice(job.text, notice))  # what the agent is told
        with s.cache.checkout(
            job.session_key,
            signature=signature,
            committed_turns=committed,
            build=build,
            config_version=s.config.config_version,
            turn_state={
                "reasoning_config": _reasoning(job, profile.reasoning_effort),
                **events.callbacks(),
            },
        ) as handle:
            agent = handle.agent
            agent.tool_env = fenced_env
            agent.stream_delta_callback = s.metrics.first_token_timer(
                agent.stream_delta_callback, job.submitted_at
            )
            s.lease_keeper.on_lost(lease, lambda: agent.interrupt("running-turn lease lost"))
            started_at = time.time()
            with self._lock:
                self._running[job.session_key] = (lease.token, agent)
                early = self._pending_interrupts.pop((job.session_key, lease.token), None)
            if early is not None:
                _interrupt_once_running(
                    agent, early, self._is_running_turn(job.session_key, lease.token)
                )
            try:
                if self._cut_off.is_set():
                    raise TurnHandedOff(f"worker {s.worker_id} is handing its turns over")
                result = agent.run_conversation(
                    job.text,
                    history=None if handle.hit else snapshot().history,
                    interrupt_depth=_depth(job),
                )
            finally:
                with self._lock:
                    self._running.pop(job.session_key, None)
            if self._cut_off.is_set():
                raise TurnHandedOff(f"turn {job.message_id} cut off by the drain; handed on")
            s.workspaces.after_turn(lease)  # before the commit: a crash after it finds the files
            if s.lease_keeper.is_lost(lease):
                raise LeaseLost(f"session {job.session_key!r}: lease lost during the turn")
            if not handle.hit and stored_prompt() is None:  # frozen on this turn: store it
                prompt = agent.frozen_prompt()
                s.sessions.save_frozen_prompt(
                    lease,
                    StoredPrompt.build(
                        prompt.system_prompt, list(prompt.tool_schemas), signature=signature
                    ),
                )
            reply = {
                "ok": True,
                "message_id": job.message_id,
                "text": result.text,
                "worker_id": s.worker_id,
                "cache_hit": handle.hit,
                "interrupted": result.interrupted,
                "usage": result.usage.as_dict(),
                "turn": committed + 1,
                "fallback": agent.fallback_active,
                "fence": lease.token,
                "started_at": started_at,
                "ended_at": time.time(),
            }
            s.lease_keeper.drop(lease)  # the commit releases it
            outcome = s.sessions.commit(
                lease,
                message_id=job.message_id,
                new_messages=result.new_messages,
                reply=reply,
                job_id=job_id,
                reply_ttl=s.reply_ttl,
                rollback_reply={
                    **reply,
                    "text": "",
                    "rolled_back": True,
                    "turn": committed,
                },
                finish=s.queue.finish_for(job.claim) if job.claim is not None else None,
            )
            if job.claim is not None:
                job.claim.completed = True
            if not outcome.rolled_back:
                handle.committed(outcome.turns)
            s.metrics.turn_committed(
                {**reply, "rolled_back": outcome.rolled_back},
                provider=profile.provider,
                model=agent.model,
            )
            usage = result.usage.as_dict()
            self._tenant_answered(
                job, job_id, usage=usage, cost=estimated_cost(profile.provider, agent.model, usage)
            )
            events.finish(reply, rolled_back=outcome.rolled_back)
        if outcome.rolled_back or agent.fallback_active:
            # Rolled back: the transcript holds discarded messages. Fallback: the
            # next turn must try the primary again. Either way: a fresh agent.
            s.cache.evict(job.session_key)
        return None  # delivered by the commit

    def _reset(self, job: TurnJob, job_id: str, lease: Lease) -> None:
        """``/new``: end the session for good (agent, tools, history), then answer.

        The agent's clients are released and the session's tools are torn down
        here, under this turn's lease and before the reset releases it: a
        teardown after that (the cache's hard close runs on another thread,
        with the fenced store of the agent's last turn) would be refused as
        a stale writer, and could hit the next turn's fresh sandbox.
        """
        s = self.s
        fenced_env = s.tool_env.with_state(RedisToolStateStore(s.client, s.keyspace, lease=lease))
        s.cache.evict(job.session_key, cause=EvictionCause.SESSION_END)
        fenced_env.teardown(job.session_key)
        s.sessions.reset(
            lease,
            message_id=job.message_id,
            reply={
                "ok": True,
                "message_id": job.message_id,
                "text": "Session reset: history cleared, tools closed. A new conversation starts.",
                "worker_id": s.worker_id,
                "reset": True,
                "turn": 0,
                "fence": lease.token,
            },
            job_id=job_id,
            reply_ttl=s.reply_ttl,
        )

    def interrupt_turn(self, session_key: str, token: int, mode: str) -> bool:
        """Stop the session's turn running here under lease ``token`` (double texting).

        The request may arrive while that turn is still loading its session or
        building its agent: it is then kept and applied as soon as the model
        loop runs.

        Returns:
            Whether the turn runs here now (else the request waits for it).
        """
        reason = stop_reason(mode)
        with self._lock:
            running = self._running.get(session_key)
            if running is None or running[0] != token:
                self._pending_interrupts[(session_key, token)] = reason
                while len(self._pending_interrupts) > _PENDING_INTERRUPTS:
                    self._pending_interrupts.pop(next(iter(self._pending_interrupts)))
                return False
        _interrupt_once_running(running[1], reason, self._is_running_turn(session_key, token))
        return True

    def _is_running_turn(self, session_key: str, token: int) -> Callable[[], bool]:
        def check() -> bool:
            with self._lock:
                running = self._running.get(session_key)
            return running is not None and running[0] == token

        return check


def stop_reason(mode: str) -> str:
    """The reason a stopped turn gives for an interrupt event of ``mode`` (stop, interrupt, rollback)."""
    return _STOP_REASONS.get(mode, f"stopped ({mode})")


def _depth(job: TurnJob) -> int:
    """The turn's interrupt depth (set at claim from the job hash; 0 for a new message)."""
    depth = job.attrs.get("interrupt_depth", 0)
    return depth if isinstance(depth, int) and not isinstance(depth, bool) and depth > 0 else 0


def _reasoning(job: TurnJob, default: str | None) -> dict[str, Any] | None:
    """The turn's ``reasoning_config``: the message's own setting, else the cluster default."""
    effort = job.attrs.get("reasoning")
    if not isinstance(effort, str) or not effort:
        effort = default
    return {"effort": effort} if effort else None


def _interrupt_once_running(
    agent: AIAgent, reason: str, still_current: Callable[[], bool]
) -> None:
    """Interrupt ``agent``'s turn once its model loop runs (it clears older interrupts on entry).

    Runs on a short-lived daemon thread so the caller (the event listener)
    never waits; it gives up when the turn does not start within
    ``_INTERRUPT_WAIT`` seconds or is no longer the turn meant
    (``still_current``), so a later turn of the session is never hit.
    """

    def wait_then_interrupt() -> None:
        deadline = time.monotonic() + _INTERRUPT_WAIT
        while not agent.is_running and time.monotonic() < deadline:
            time.sleep(_INTERRUPT_POLL)
        if still_current():
            agent.interrupt(reason)

    if agent.is_running:
        agent.interrupt(reason)
        return
    threading.Thread(target=wait_then_interrupt, name="interrupt", daemon=True).start()
