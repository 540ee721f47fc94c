"""One turn of one session on this worker: lease, agent, run, fenced commit, reply.

The order of a turn:

1. take the session's running-turn lease; the same round trip returns the
   config version and registry generation, so a stale agent can never run;
2. under the lease, a message id already answered is answered again from the
   stored reply (a message is processed once even if delivered twice); else
3. load the session (history, frozen prompt, committed-turn count);
4. check out the agent from the local cache (a hit needs the same signature and
   the same committed-turn count; otherwise a new agent is built, from the
   session's frozen prompt when it was frozen under the same signature);
5. run the turn with a tool-state store fenced by the lease;
6. commit history + reply in one fenced script (a worker that lost its lease
   writes nothing), release the lease, push the reply to the waiting caller.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from agent import AIAgent
from agent.tools import ToolEnvironment, ToolRegistry
from cluster.errors import AgentClusterError, LeaseLost
from cluster.keys import Keyspace
from cluster.leases import Lease, RedisLeaseStore
from cluster.session_store import FrozenPrompt, RedisSessionStore, SessionSnapshot
from cluster.tool_state import RedisToolStateStore
from cluster.transport import ReplyChannel, TurnJob
from cluster.versions import RedisVersionStore
from worker.cache import AgentCache
from worker.profile import AgentProfile

log = logging.getLogger("worker.turns")

LEASE_RETRY_DELAY = 0.02


class ConfigView:
    """The worker's view of the cluster config: version, registry generation, profile.

    Refreshed when a turn's lease reports a newer version (so a missed event can
    never let a turn run on a stale agent) and when an event announces one.
    """

    def __init__(self, versions: RedisVersionStore) -> None:
        self._versions = versions
        self._lock = threading.Lock()
        self.config_version = -1
        self.registry_generation = -1
        self.profile = AgentProfile()

    def refresh(
        self, config_version: int | None = None, registry_generation: int | None = None
    ) -> bool:
        """Reload when the given (or current) versions differ; return True if the profile changed."""
        with self._lock:
            if config_version is None or registry_generation is None:
                config_version, registry_generation = self._versions.versions()
            if (config_version, registry_generation) == (
                self.config_version,
                self.registry_generation,
            ):
                return False
            _, document = self._versions.current_config()
            old = self.profile.busting_digest()
            self.profile = AgentProfile.from_config(
                document, registry_generation=registry_generation
            )
            self.config_version, self.registry_generation = config_version, registry_generation
            return self.profile.busting_digest() != old


class LeaseKeeper:
    """Extends the leases of running turns; a lease it cannot extend interrupts its turn."""

    def __init__(self, leases: RedisLeaseStore, *, ttl: float) -> None:
        self._leases = leases
        self._ttl = ttl
        self._held: dict[str, tuple[Lease, Callable[[], None]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def hold(self, lease: Lease, on_lost: Callable[[], None]) -> None:
        with self._lock:
            self._held[lease.session_key] = (lease, on_lost)

    def drop(self, lease: Lease) -> None:
        with self._lock:
            self._held.pop(lease.session_key, None)

    def _run(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            with self._lock:
                held = list(self._held.values())
            for lease, on_lost in held:
                try:
                    extended = self._leases.extend(lease, self._ttl)
                except redis.RedisError as exc:
                    log.warning("could not extend lease of %s: %s", lease.session_key, exc)
                    continue
                if not extended:
                    log.warning(
                        "lease of session %s (token %s) was taken over; interrupting its turn",
                        lease.session_key,
                        lease.token,
                    )
                    on_lost()

    def stop(self) -> None:
        self._stop.set()


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
    lease_ttl: float = 30.0
    turn_timeout: float = 300.0
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


class TurnRunner:
    """Runs turn jobs; :meth:`run` is the executor's handler."""

    def __init__(self, services: TurnServices) -> None:
        self.s = services

    def run(self, job: TurnJob) -> None:
        """Run one turn and deliver its reply (or a clear error) to the caller."""
        s = self.s
        try:
            reply = self._run_leased(job)
        except LeaseLost as exc:
            # Another worker owns the running turn now; it answers this message.
            log.warning("turn %s of %s lost its lease: %s", job.message_id, job.session_key, exc)
            s.cache.evict(job.session_key)
            return
        except AgentClusterError as exc:
            reply = self._error_reply(job, exc)
        except Exception as exc:  # a bug must still answer the caller, not hang it
            log.exception("turn %s of %s failed", job.message_id, job.session_key)
            reply = self._error_reply(job, exc)
        s.replies.push(job.session_key, job.message_id, reply)

    def _error_reply(self, job: TurnJob, exc: BaseException) -> dict[str, Any]:
        return {
            "ok": False,
            "message_id": job.message_id,
            "worker_id": self.s.worker_id,
            "error": f"{type(exc).__name__}: {exc}",
        }

    def _acquire(self, job: TurnJob) -> Lease:
        deadline = time.monotonic() + self.s.turn_timeout
        while True:
            lease = self.s.leases.acquire(job.session_key, self.s.worker_id, self.s.lease_ttl)
            if lease is not None:
                return lease
            if time.monotonic() > deadline:
                raise LeaseLost(
                    f"session {job.session_key!r}: another worker held the running-turn "
                    f"lease for {self.s.turn_timeout:g}s; the turn was not run"
                )
            time.sleep(LEASE_RETRY_DELAY)

    def _run_leased(self, job: TurnJob) -> dict[str, Any]:
        s = self.s
        lease = self._acquire(job)
        try:
            if s.config.refresh(lease.config_version, lease.registry_generation):
                s.cache.clear()
            stored = s.sessions.reply_for(job.session_key, job.message_id)
            if stored is not None:  # a redelivered message: answer it again, run nothing
                return dict(stored)
            return self._run_with_agent(job, lease, s.sessions.load(job.session_key))
        finally:
            s.lease_keeper.drop(lease)
            try:
                s.leases.release(lease)
            except redis.RedisError as exc:  # the lease expires on its own
                log.warning("could not release lease of %s: %s", job.session_key, exc)

    def _run_with_agent(
        self, job: TurnJob, lease: Lease, snapshot: SessionSnapshot
    ) -> dict[str, Any]:
        s = self.s
        profile = s.config.profile
        user_id = job.attrs.get("user_id")
        signature = profile.signature(s.environ, user_id=user_id)
        committed = snapshot.meta.turns if snapshot.meta is not None else 0
        frozen = (
            snapshot.frozen_prompt
            if (
                snapshot.frozen_prompt is not None and snapshot.frozen_prompt.signature == signature
            )
            else None
        )
        fenced_env = s.tool_env.with_state(RedisToolStateStore(s.client, s.keyspace, lease=lease))

        def build() -> AIAgent:
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
                user_id=user_id,
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

        with s.cache.checkout(
            job.session_key,
            signature=signature,
            committed_turns=committed,
            build=build,
            config_version=s.config.config_version,
        ) as handle:
            agent = handle.agent
            agent.tool_env = fenced_env
            s.lease_keeper.hold(lease, lambda: agent.interrupt("running-turn lease lost"))
            result = agent.run_conversation(
                job.text, history=None if handle.hit else snapshot.history
            )
            if frozen is None:
                prompt = agent.frozen_prompt()
                s.sessions.save_frozen_prompt(
                    lease,
                    FrozenPrompt.build(
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
            }
            turns = s.sessions.commit_turn(
                lease, message_id=job.message_id, new_messages=result.new_messages, reply=reply
            )
            handle.committed(turns)
        return reply
