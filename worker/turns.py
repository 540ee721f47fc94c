"""One turn of one session on this worker, in named phases: begin, prepare, run, commit.

:meth:`TurnRunner.run` is the executor's handler; it returns a
:class:`~worker.turn_outcome.TurnOutcome` (finished, deferred, handed off).

1. :meth:`TurnRunner._begin` (one script, ``turn_begin.lua``): a message
   already answered runs nothing (its reply was delivered with its commit); a
   session owned by another worker gets its job handed on; a job that is not
   its session's earliest pending one, or whose session's lease another worker
   holds, is deferred (the executor retries it with backoff, holding no
   thread); otherwise the lease is taken, and the same round trip returns the
   config version and registry generation (applied before anything else, so a
   stale agent can never run) and the session's committed-turn count. The
   lease keeper keeps the lease alive from here on.
2. :meth:`TurnRunner._prepare`: the config signature, a tool-state store
   fenced by the lease, the workspace restore (if the session moved here) and
   the agent's checkout from the local cache (a hit needs the same signature
   and the same committed-turn count; only a miss reads the session's history
   and frozen prompt and builds a new agent, from the frozen prompt when what
   builds it is unchanged: ``AgentProfile.prompt_key``, not the signature).
3. :meth:`TurnRunner._run_agent`: the model loop. An interrupt that arrived
   before it started is applied by the hook the agent calls when the loop
   starts (:class:`worker.running_turns.RunningTurns`); ``steer`` messages
   are taken in at its safe points, and a ``collect`` turn joined its run of
   collect messages before it (:mod:`worker.folding`).
4. :meth:`TurnRunner._commit`: the workspace snapshot (if the turn changed
   it), the frozen prompt (if frozen on this turn), then one fenced script:
   history + reply (and the replies of the messages folded in), the reply
   delivered to the caller, the lease released and
   the rq job completed (a worker that lost its lease writes nothing); then
   metrics and the tenant's usage.

On a cache hit that is two round trips to Redis besides the claim.

A Redis error anywhere defers the turn (retried once Redis answers; a turn
that committed is then found answered); a lost lease defers it too (the turn
start then finds where it belongs). A failing turn is answered with a clear
error reply. Deferrals, error replies, ``/new`` and tenant usage live in
:mod:`worker.turn_answers`; what a turn talks to in :mod:`worker.turn_services`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import redis

from agent import AIAgent, TurnResult
from agent.providers import DEFAULT_MAX_TOKENS, RetryPolicy
from agent.tools import ToolEnvironment
from agent.turn_notice import with_notice
from cluster.errors import (
    AgentClusterError,
    LeaseLost,
    LeaseVoided,
    NoLiveWorkers,
    NotReplicated,
)
from cluster.folds import FoldStore
from cluster.leases import Lease, TurnStart, TurnStartStatus
from cluster.session_store import (
    Committed,
    RedisSessionStore,
    SessionSnapshot,
    StoredPrompt,
)
from cluster.tool_state import RedisToolStateStore
from cluster.transport import TurnJob
from worker.cache import CheckoutHandle
from worker.folding import FOLD_ATTR, SteerSignals, TurnFolding
from worker.metrics import estimated_cost
from worker.profile import AgentProfile
from worker.running_turns import RunningTurns
from worker.streaming import TurnEvents, open_turn_events
from worker.turn_answers import TurnAnswers
from worker.turn_outcome import Deferred, Finished, HandedOff, TurnOutcome
from worker.turn_services import TurnServices

log = logging.getLogger("worker.turns")

# What the turn's reply says stopped it, by the mode of the interrupt event.
_STOP_REASONS = {
    "stop": "stopped by /stop (the chat command or POST /v1/sessions/{key}/interrupt)",
    "interrupt": "interrupted by a newer message (double texting: interrupt)",
    "rollback": "rolled back by a newer message (double texting: rollback)",
}


@dataclass(frozen=True)
class PreparedTurn:
    """A turn ready to run: what :meth:`TurnRunner._prepare` set up.

    Attributes:
        job: The job as the agent sees it (a workspace notice before the text).
        job_id: The rq job id.
        lease: The session's running-turn lease.
        committed: The session's committed-turn count when the turn began.
        profile: The agent profile of the applied config.
        signature: The profile's config signature for this user.
        prompt_key: What builds the session's frozen prompt (``AgentProfile.prompt_key``).
        stored: The session as Redis holds it (read only on a cache miss).
        events: The turn's live events (streaming callers).
        handle: The agent's checkout from the local cache.
    """

    job: TurnJob
    job_id: str
    lease: Lease
    committed: int
    profile: AgentProfile
    signature: str
    prompt_key: str
    stored: StoredSession
    events: TurnEvents
    handle: CheckoutHandle[AIAgent]

    @property
    def agent(self) -> AIAgent:
        """The agent that runs the turn."""
        return self.handle.agent


class StoredSession:
    """The session's history and frozen prompt in Redis, read at most once, when first asked."""

    def __init__(self, sessions: RedisSessionStore, session_key: str, *, prompt_key: str) -> None:
        self._sessions = sessions
        self._session_key = session_key
        self._prompt_key = prompt_key
        self._snapshot: SessionSnapshot | None = None

    def snapshot(self) -> SessionSnapshot:
        """History and frozen prompt (one read, the first time)."""
        if self._snapshot is None:
            self._snapshot = self._sessions.load(self._session_key)
        return self._snapshot

    def frozen_prompt(self) -> StoredPrompt | None:
        """The stored frozen prompt if what builds it is unchanged (its prompt key)."""
        stored = self.snapshot().frozen_prompt
        return stored if stored is not None and stored.prompt_key == self._prompt_key else None


class TurnRunner:
    """Runs turn jobs; :meth:`run` is the executor's handler."""

    def __init__(self, services: TurnServices) -> None:
        self.services = services
        self.running = RunningTurns()
        self.answers = TurnAnswers(services)
        self._folds = FoldStore(services.client, services.keyspace)
        self.steer_signals = SteerSignals()

    def run(self, job: TurnJob) -> TurnOutcome:
        """Run one turn; its reply (or a clear error) reaches the caller.

        Returns:
            :class:`Finished` (answered: by its commit, an error reply, or
            before), :class:`Deferred` (cannot start yet, or Redis failed:
            retry later) or :class:`HandedOff` (the job belongs to another worker).
        """
        metrics = self.services.metrics
        job_id = self.services.queue.job_id(job)
        try:
            outcome = self._run_leased(job, job_id)
        except LeaseLost as exc:
            if isinstance(exc, LeaseVoided):  # a failover: every running turn's lease is void
                self.services.lease_keeper.fail_over()
            metrics.lease_lost()
            log.warning("turn %s of %s lost its lease: %s", job.message_id, job.session_key, exc)
            self.services.cache.evict(job.session_key)
            return self.answers.defer(job_id, "its lease was lost", redis_error=False)
        except NotReplicated as exc:
            # Not confirmed by a replica (redis_durability replica): not acquired, or not
            # committed. Never a success: begun again later (a stored reply ends it then).
            metrics.turn_outcome("deferred")
            log.warning("turn %s of %s: %s", job.message_id, job.session_key, exc)
            return self.answers.defer(
                job_id, "a replica did not confirm its write", redis_error=True
            )
        except redis.RedisError as exc:
            metrics.turn_outcome("deferred")
            hint = (
                " (every connection of the worker's pool was busy: the turn is retried; "
                "a worker sizes its pools from --concurrency)"
                if "No connection available" in str(exc)
                else ""
            )
            log.warning(
                "turn %s of %s: Redis failed: %s%s", job.message_id, job.session_key, exc, hint
            )
            return self.answers.defer(job_id, f"Redis failed ({exc})", redis_error=True)
        except AgentClusterError as exc:
            return self.answers.error(job, job_id, exc)
        except Exception as exc:  # a bug must still answer the caller, not hang it
            log.exception("turn %s of %s failed", job.message_id, job.session_key)
            return self.answers.error(job, job_id, exc)
        if isinstance(outcome, Deferred):
            metrics.turn_set_aside(outcome)
            return outcome
        if isinstance(outcome, HandedOff):
            metrics.turn_set_aside(outcome)
        self.answers.settled(job_id)  # a handed-off job's backoff count goes with it
        return outcome

    def cut_off(self) -> int:
        """Interrupt every running turn for a hand-over (drain past its timeout).

        The interrupted turns commit nothing and are not completed here: their
        jobs stay on the in-flight list, which the drain hands on.

        Returns:
            How many turns were interrupted.
        """
        return self.running.cut_off_all()

    def interrupt_turn(self, session_key: str, token: int, mode: str) -> bool:
        """Stop the session's turn running here under lease ``token`` (double texting).

        The request may arrive while that turn is still loading its session or
        building its agent: it is then kept and applied as soon as the model
        loop runs.

        Returns:
            Whether the turn runs here now (else the request waits for it).
        """
        return self.running.interrupt(session_key, token, stop_reason(mode))

    def steer_arrived(self, session_key: str, token: int) -> None:
        """A ``steer`` message was queued while the session's turn under ``token`` ran here."""
        self.steer_signals.arrived(session_key, token)

    # -- the phases ----------------------------------------------------------------------

    def _run_leased(self, job: TurnJob, job_id: str) -> TurnOutcome:
        """Begin the turn; with the lease taken, reset or prepare, run and commit."""
        services = self.services
        start = self._begin(job, job_id)
        if not isinstance(start, TurnStart):
            return start
        lease = start.lease
        assert lease is not None
        services.lease_keeper.hold(lease)
        outcome: TurnOutcome = Finished()
        try:
            if services.config.refresh(lease.config_version, lease.registry_generation):
                services.cache.clear()
            if job.attrs.get("command") == "reset":
                self.answers.reset(job, job_id, lease)
                services.metrics.turn_outcome("reset")
                return outcome
            folding = TurnFolding(self._folds, lease, job_id, self.steer_signals)
            if job.attrs.get(FOLD_ATTR) == "collect":
                wait = folding.collect(services.collect_window)
                if wait > 0:
                    return Deferred(f"turn {job_id} collects the messages sent after it", wait)
            with self._prepare(job, job_id, start, lease) as turn:
                result = self._run_agent(turn, folding)
                if isinstance(result, HandedOff):
                    turn.handle.turn_failed()  # its transcript holds what was not committed
                    return result
                committed = self._commit(turn, result, folding)
                outcome = Finished(job_completed=job.claim is not None)
            if committed.rolled_back or turn.agent.fallback_active:
                # Rolled back: the transcript holds discarded messages. Fallback: the
                # next turn must try the primary again. Either way: a fresh agent.
                services.cache.evict(job.session_key)
            return outcome
        finally:
            services.lease_keeper.drop(lease)
            if not (isinstance(outcome, Finished) and outcome.job_completed):
                try:  # else the commit released it
                    services.leases.release(lease)
                except redis.RedisError as exc:  # our next attempt takes it over, others wait
                    log.warning("could not release lease of %s: %s", job.session_key, exc)

    def _begin(self, job: TurnJob, job_id: str) -> TurnStart | TurnOutcome:
        """Take the lease, or decide what else happens to the job (:class:`Finished`: answered)."""
        services = self.services
        if self.running.cut_off:
            return HandedOff(f"worker {services.worker_id} is handing its turns over")
        start = services.leases.begin_turn(
            job.session_key,
            services.worker_id,
            services.lease_ttl,
            job_id=job_id,
            message_id=job.message_id,
            depth=_depth(job),
        )
        status = start.status
        if status is TurnStartStatus.ACQUIRED:
            services.metrics.leases_acquired.inc()
            return start
        if status in (TurnStartStatus.ANSWERED, TurnStartStatus.NOT_PENDING):
            services.metrics.turn_outcome("answered")
            self.answers.tenant_answered(job, job_id, usage=None, cost=0.0)
            return Finished(job_gone=status is TurnStartStatus.NOT_PENDING)
        if status is TurnStartStatus.NOT_OWNER:
            owner = start.other
            if not owner or owner == services.worker_id:
                try:
                    owner = services.placement.assign(job.session_key)
                except NoLiveWorkers:
                    return self.answers.defer(
                        job_id, "no worker can own its session", redis_error=False
                    )
            if owner == services.worker_id:
                return self.answers.defer(
                    job_id, "its session was just assigned here", redis_error=False
                )
            log.info(
                "turn %s of %s: session owned by %s; handing it on",
                job.message_id,
                job.session_key,
                owner,
            )
            return HandedOff(f"session {job.session_key!r} is owned by {owner}", to_worker=owner)
        if status is TurnStartStatus.NOT_HEAD:
            if services.queue.clear_stale_pending(job.session_key, start.other):
                return self.answers.defer(
                    job_id, "a stale earlier entry was cleared", redis_error=False
                )
            return self.answers.defer(
                job_id, f"earlier message {start.other} runs first", redis_error=False
            )
        return self.answers.defer(
            job_id, f"worker {start.other} runs a turn of its session", redis_error=False
        )

    @contextlib.contextmanager
    def _prepare(
        self, job: TurnJob, job_id: str, start: TurnStart, lease: Lease
    ) -> Iterator[PreparedTurn]:
        """Signature, fenced tools, workspace restore, agent checkout; the checkout ends after."""
        services = self.services
        profile = services.config.profile
        signature = profile.signature(services.environ, user_id=job.attrs.get("user_id"))
        fenced_env = services.tool_env.with_state(
            RedisToolStateStore(services.client, services.keyspace, lease=lease)
        )
        if services.notices is not None:  # notify_on_complete processes report back
            fenced_env = replace(fenced_env, completion_watcher=services.notices.for_turn(job))
        prompt_key = profile.prompt_key()
        stored = StoredSession(services.sessions, job.session_key, prompt_key=prompt_key)
        events = open_turn_events(
            services.client,
            services.keyspace,
            job,
            worker_id=services.worker_id,
            fence=lease.token,
            ttl=services.reply_ttl,
        )
        # The session may have moved here: restore its files, tell the agent what could not follow.
        notice = services.workspaces.before_turn(lease, start.workspace_digest)
        if notice:
            job = replace(job, text=with_notice(job.text, notice))
        with services.cache.checkout(
            job.session_key,
            signature=signature,
            committed_turns=start.committed_turns,
            build=lambda: self._build_agent(job, profile, fenced_env, stored.frozen_prompt()),
            config_version=services.config.config_version,
            turn_state={
                "reasoning_config": _reasoning(job, profile.reasoning_effort),
                **events.callbacks(),
            },
        ) as handle:
            agent = handle.agent
            agent.tool_env = fenced_env
            agent.stream_delta_callback = services.metrics.first_token_timer(
                agent.stream_delta_callback, job.submitted_at
            )
            services.lease_keeper.on_lost(lease, lambda: agent.interrupt("running-turn lease lost"))
            yield PreparedTurn(
                job=job,
                job_id=job_id,
                lease=lease,
                committed=start.committed_turns,
                profile=profile,
                signature=signature,
                prompt_key=prompt_key,
                stored=stored,
                events=events,
                handle=handle,
            )

    def _build_agent(
        self,
        job: TurnJob,
        profile: AgentProfile,
        tool_env: ToolEnvironment,
        frozen: StoredPrompt | None,
    ) -> AIAgent:
        """A new agent for the session (a cache miss), from its frozen prompt when it has one."""
        services = self.services
        services.metrics.agents_built.inc()
        return AIAgent(
            model=profile.model,
            api_key=profile.api_key(services.environ),
            base_url=profile.base_url,
            provider=profile.provider,
            api_mode=profile.api_mode,
            session_id=job.session_key,
            platform=str(job.attrs.get("platform", "http")),
            toolsets=list(profile.toolsets),
            ephemeral_system_prompt=profile.ephemeral_prompt,
            max_iterations=profile.max_iterations,
            max_tokens=profile.max_tokens or DEFAULT_MAX_TOKENS,
            user_id=job.attrs.get("user_id"),
            fallback=profile.fallback_runtime(services.environ),
            compression=profile.compression,
            retry_policy=RetryPolicy(deadline=services.model_call_deadline),
            tool_registry=services.tool_registry,
            tool_env=tool_env,
            skip_context_files=True,
            frozen_prompt=None
            if frozen is None
            else {"system_prompt": frozen.system_prompt, "tool_schemas": frozen.tool_schemas},
        )

    def _run_agent(self, turn: PreparedTurn, folding: TurnFolding) -> RanTurn | HandedOff:
        """The model loop (taking in steer and collect messages); :class:`HandedOff` when a
        drain cut the turn off."""
        job, agent = turn.job, turn.agent
        worker_id = self.services.worker_id
        on_loop_start = self.running.started(job.session_key, turn.lease.token, agent)
        started_at = time.time()
        agent.steer_callback = folding.poll
        try:
            if self.running.cut_off:
                return HandedOff(f"worker {worker_id} is handing its turns over")
            result = agent.run_conversation(
                job.text,
                history=None if turn.handle.hit else turn.stored.snapshot().history,
                interrupt_depth=_depth(job),
                on_loop_start=on_loop_start,
            )
        finally:
            agent.steer_callback = None
            self.running.ended(job.session_key)
        if self.running.cut_off:
            return HandedOff(f"turn {job.message_id} cut off by the drain; handed on")
        return RanTurn(result=result, started_at=started_at)

    def _commit(self, turn: PreparedTurn, ran: RanTurn, folding: TurnFolding) -> Committed:
        """Workspace snapshot, frozen prompt, then the fenced commit; metrics and usage after."""
        services = self.services
        job, lease, agent, result = turn.job, turn.lease, turn.agent, ran.result
        services.workspaces.after_turn(lease)  # before the commit: a crash after it finds the files
        if services.lease_keeper.is_lost(lease):
            raise LeaseLost(f"session {job.session_key!r}: lease lost during the turn")
        if not turn.handle.hit and turn.stored.frozen_prompt() is None:  # frozen on this turn
            prompt = agent.frozen_prompt()
            services.sessions.save_frozen_prompt(
                lease,
                StoredPrompt.build(
                    prompt.system_prompt, list(prompt.tool_schemas), prompt_key=turn.prompt_key
                ),
            )
        reply = {
            "ok": True,
            "message_id": job.message_id,
            "text": result.text,
            "worker_id": services.worker_id,
            "cache_hit": turn.handle.hit,
            "interrupted": result.interrupted,
            "compressed": result.compressed,
            "usage": result.usage.as_dict(),
            "turn": turn.committed + 1,
            "fallback": agent.fallback_active,
            "fence": lease.token,
            "epoch": lease.epoch,
            "started_at": ran.started_at,
            "ended_at": time.time(),
        }
        if folding.taken:
            reply["folded"] = [m.message_id for m in folding.taken]
        services.lease_keeper.drop(lease)  # the commit releases it
        committed = services.sessions.commit(
            lease,
            message_id=job.message_id,
            new_messages=result.new_messages,
            reply=reply,
            job_id=turn.job_id,
            reply_ttl=services.reply_ttl,
            rollback_reply={**reply, "text": "", "rolled_back": True, "turn": turn.committed},
            finish=services.queue.finish_for(job.claim) if job.claim is not None else None,
            folded=folding.answers(reply),
        )
        if not committed.rolled_back:
            turn.handle.committed(committed.turns)
        services.metrics.turn_committed(
            {**reply, "rolled_back": committed.rolled_back},
            provider=turn.profile.provider,
            model=agent.model,
        )
        usage = result.usage.as_dict()
        cost = estimated_cost(turn.profile.provider, agent.model, usage)
        self.answers.tenant_answered(job, turn.job_id, usage=usage, cost=cost)
        turn.events.finish(reply, rolled_back=committed.rolled_back)
        return committed


@dataclass(frozen=True)
class RanTurn:
    """What the run phase produced: the agent's result and when the turn started (wall clock)."""

    result: TurnResult
    started_at: float


def stop_reason(mode: str) -> str:
    """Why a stopped turn stopped, by the interrupt event's ``mode`` (stop, interrupt, rollback)."""
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
