"""The worker's local agent cache: a thread-safe shell around the pure policy.

:class:`AgentCache` keeps one agent per session between messages, so the
session's frozen system prompt and tool schemas stay byte-identical and the
provider's prompt cache keeps hitting. The worker uses it like this::

    with cache.checkout(session_id, signature=sig, committed_turns=n,
                        build=lambda: AIAgent(...), turn_state={...}) as handle:
        agent = handle.agent              # cached (hit) or freshly built (miss)
        init_for_turn(agent, depth)
        result = agent.run_conversation(...)
        handle.committed(n + 1)           # the entry now knows the new turn count

Division of labour: :mod:`worker.cache.policy` decides (which entries to evict
for the cap, the idle TTL, the memory budget or an invalidation); this module
holds the lock, applies the decisions to its ordered entries and hands the
victims to a :class:`~worker.cache.releaser.ReleaseExecutor`, so that releases run on
a background thread and never under the lock. Eviction is soft
(``release_clients()``); ending a session is hard (``close()``). An entry whose
session is mid-turn (or whose agent is still being built) is never released: it
is marked stale and released when its turn ends. The idle sweep is run by the
worker, either through :meth:`AgentCache.start_sweeper` or by calling
:meth:`AgentCache.sweep_idle` every :attr:`AgentCache.sweep_interval` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Generic

from cluster.errors import ConfigError, SessionBusy
from cluster.settings import DEFAULT_CACHE_SIZE, DEFAULT_IDLE_TTL, DEFAULT_SWEEP_INTERVAL
from worker.cache._state import CacheState, Outcome
from worker.cache.agent import (
    apply_turn_state,
    check_turn_state,
)
from worker.cache.entry import A, CheckoutHandle, EntryInfo, InvalidationResult
from worker.cache.policy import EvictionCause
from worker.cache.releaser import ReleaseExecutor, Releaser
from worker.cache.sweeper import Sweeper

__all__ = ["DEFAULT_MAX_SIZE", "AgentCache"]

logger = logging.getLogger("worker.cache")

DEFAULT_MAX_SIZE = DEFAULT_CACHE_SIZE


class AgentCache(Generic[A]):
    """LRU cache of agents, one per session, safe to share between threads.

    Settings are keyword-only constructor arguments (see ``__init__``). Every
    method may be called from any thread. Two checkouts of the same session
    never both build: the second waits (up to its ``wait``) for the first turn
    to end and then reuses its agent, or raises :class:`SessionBusy`.
    ``len()`` and :meth:`keys` count entries whose agent is still being built.
    """

    def __init__(
        self,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        idle_ttl: float = DEFAULT_IDLE_TTL,
        sweep_interval: float = DEFAULT_SWEEP_INTERVAL,
        memory_budget: int | None = None,
        clock: Callable[[], float] = time.time,
        releaser: ReleaseExecutor | None = None,
    ) -> None:
        """Create an empty cache.

        Args:
            max_size: the cap on cached agents (>= 1).
            idle_ttl: seconds without agent activity after which the idle sweep
                soft-releases an agent (> 0).
            sweep_interval: seconds between sweeps of :meth:`start_sweeper` (> 0).
            memory_budget: optional bound, in bytes, on the sum of the agents'
                ``memory_estimate()``; least recently used idle agents are evicted
                while over it. ``None`` disables it (and the estimates).
            clock: wall clock on the ``time.time()`` scale (agents' activity
                timestamps use that scale).
            releaser: where releases run; a private :class:`Releaser` by default.

        Raises:
            ConfigError: a setting is out of range.
        """
        if max_size < 1:
            raise ConfigError(f"agent cache max_size must be >= 1, got {max_size}")
        if idle_ttl <= 0:
            raise ConfigError(f"agent cache idle_ttl must be > 0 seconds, got {idle_ttl}")
        if memory_budget is not None and memory_budget < 0:
            raise ConfigError(f"agent cache memory_budget must be >= 0 bytes, got {memory_budget}")
        self.max_size = max_size
        self.idle_ttl = idle_ttl
        self.sweep_interval = sweep_interval
        self.memory_budget = memory_budget
        self._clock = clock
        self._releaser: ReleaseExecutor = releaser if releaser is not None else Releaser()
        self._lock = threading.Lock()
        self._turn_ended = threading.Condition(self._lock)
        self._state: CacheState[A] = CacheState(
            OrderedDict(), max_size=max_size, memory_budget=memory_budget
        )
        self._sweeper = Sweeper(
            self.sweep_idle, interval=sweep_interval, name="agent-cache-sweeper"
        )

    # -- turns -------------------------------------------------------------------

    @contextmanager
    def checkout(
        self,
        session_id: str,
        *,
        signature: str,
        committed_turns: int,
        build: Callable[[], A],
        turn_state: Mapping[str, Any] | None = None,
        config_version: int = 0,
        wait: float | None = 5.0,
    ) -> Iterator[CheckoutHandle[A]]:
        """Hold the session's agent for one turn (a context manager).

        The cached agent is reused only if its signature equals ``signature``
        and it knows exactly ``committed_turns`` committed turns; a different
        count means the session was served elsewhere (or reset) since, so the
        old agent is soft-released and a new one built. On a miss a
        :data:`PENDING` marker holds the slot while ``build()`` runs outside the
        lock; a failing build removes the marker and propagates. The session is
        mid-turn (never evicted) until the ``with`` block exits; then the cap
        and memory budget are enforced again. If the block raises before
        :meth:`CheckoutHandle.committed` was called, the agent is soft-released
        at exit (cause ``failed_turn``): its transcript may hold messages the
        shared store never committed, so it must not serve the next turn.

        Args:
            session_id: the session key.
            signature: :func:`config_signature` of the session's current config.
            committed_turns: committed turns of the session in the shared store.
            build: makes a new agent; called without the lock, only on a miss.
            turn_state: per-message state set on the agent (see
                :func:`apply_turn_state`); ``None`` leaves the agent as it is.
            config_version: recorded on the entry, for :meth:`invalidate` predicates.
            wait: seconds to wait if this session already has a turn checked out
                here (``None``: for ever, ``0``: not at all).

        Yields:
            The :class:`CheckoutHandle` of the turn.

        Raises:
            SessionBusy: the session's other turn did not end within ``wait``.
            AgentCacheError: ``turn_state`` has an unknown key.
        """
        if turn_state is not None:
            check_turn_state(turn_state)
        handle = self._claim(session_id, signature, committed_turns, build, config_version, wait)
        try:
            if turn_state is not None:
                apply_turn_state(handle.agent, turn_state)
            yield handle
        except BaseException:
            handle.turn_failed()
            raise
        finally:
            self._end_turn(handle)

    def _claim(
        self,
        session_id: str,
        signature: str,
        committed_turns: int,
        build: Callable[[], A],
        config_version: int,
        wait: float | None,
    ) -> CheckoutHandle[A]:
        with self._lock:
            self._wait_for_turn_end(session_id, wait)
            entry, hit, outcome = self._state.claim(
                session_id, signature, committed_turns, config_version
            )
        self._carry_out(outcome)
        if hit is not None:
            return hit
        replaced = outcome.replaced
        try:
            agent = build()
        except BaseException:
            with self._lock:
                self._state.forget_pending(session_id, entry)
                self._turn_ended.notify_all()
            raise
        memory = self._estimate(agent)
        with self._lock:
            outcome = self._state.fill_pending(entry, agent, memory)
        self._carry_out(outcome)
        return CheckoutHandle(session_id, agent, entry, hit=False, replaced=replaced)

    def _end_turn(self, handle: CheckoutHandle[A]) -> None:
        memory = None if handle.is_discarded else self._estimate(handle.agent)
        with self._lock:
            outcome = self._state.end_turn(handle, memory)
            self._turn_ended.notify_all()
        self._carry_out(outcome)

    def _wait_for_turn_end(self, session_id: str, wait: float | None) -> None:
        if session_id not in self._state.running:
            return
        if wait is None or wait > 0:
            if self._turn_ended.wait_for(lambda: session_id not in self._state.running, wait):
                return
        raise SessionBusy(
            f"session {session_id!r} already has a turn checked out on this worker "
            f"(waited {wait or 0}s); the cluster runs one turn per session at a time: "
            "retry once that turn ends, or check the session's running-turn lease"
        )

    # -- direct manipulation ---------------------------------------------------------

    def insert(
        self,
        session_id: str,
        agent: A,
        *,
        signature: str,
        committed_turns: int = 0,
        config_version: int = 0,
    ) -> None:
        """Cache an idle agent as most recently used, then enforce the cap.

        A different agent already cached for the session is soft-released.

        Raises:
            SessionBusy: the session has a turn checked out here.
        """
        memory = self._estimate(agent)
        with self._lock:
            self._wait_for_turn_end(session_id, 0)
            outcome = self._state.insert(
                session_id, agent, signature, committed_turns, config_version, memory
            )
        self._carry_out(outcome)

    def evict(self, session_id: str, *, cause: EvictionCause = EvictionCause.EVICTED) -> bool:
        """Soft-release one session's agent (fallback activation, eviction).

        A mid-turn agent is marked stale instead and released when its turn
        ends. No other session's entry is touched.

        Returns:
            Whether the session had an entry.
        """
        return self._let_go(session_id, cause, hard=False)

    def close_session(self, session_id: str) -> bool:
        """Hard-close one session's agent: the session ended (reset, expiry).

        ``close()`` also tears down the session's processes, sandbox and tool
        state. A mid-turn agent is closed when its turn ends. If nothing is
        cached the caller must tear down the session's tool state itself.

        Returns:
            Whether the session had an entry.
        """
        return self._let_go(session_id, EvictionCause.SESSION_END, hard=True)

    def _let_go(self, session_id: str, cause: EvictionCause, *, hard: bool) -> bool:
        with self._lock:
            outcome = self._state.let_go(session_id, cause, hard=hard)
        self._carry_out(outcome)
        return outcome.found

    def invalidate(
        self,
        predicate: Callable[[EntryInfo], bool],
        *,
        cause: EvictionCause = EvictionCause.CONFIG_BUST,
    ) -> InvalidationResult:
        """Stop reusing every agent whose :class:`EntryInfo` matches ``predicate``.

        Idle matches are soft-released at once; mid-turn ones are marked stale
        and released when their turn ends. ``predicate`` runs under the cache
        lock: keep it fast and do not call the cache from it.

        Example:
            ``cache.invalidate(lambda e: e.config_version < new_version)``
        """
        with self._lock:
            decision, outcome = self._state.invalidate(predicate, cause)
        self._carry_out(outcome)
        return InvalidationResult(decision.release_now, decision.mark_stale)

    def clear(self, *, cause: EvictionCause = EvictionCause.CLEARED) -> int:
        """Soft-release every agent (global model or reasoning change).

        Returns:
            How many entries were released or marked stale.
        """
        result = self.invalidate(lambda _info: True, cause=cause)
        return len(result.released) + len(result.marked_stale)

    def sweep_idle(self, now: float | None = None) -> int:
        """Soft-release the agents idle for longer than :attr:`idle_ttl`.

        Mid-turn agents and agents without a last-activity timestamp stay.

        Args:
            now: wall-clock time; the cache's clock by default.

        Returns:
            How many agents were evicted.
        """
        when = self._clock() if now is None else now
        with self._lock:
            outcome = self._state.sweep(when, self.idle_ttl)
        self._carry_out(outcome)
        return len(outcome.releases)

    def shed_for_memory(self, rss: int, budget: int) -> int:
        """Soft-release least recently used idle agents while the process' RSS nears ``budget``.

        The worker's memory guard (:mod:`worker.memory_guard`) calls this with
        each RSS reading; the decision is :func:`~worker.cache.policy.plan_rss_eviction`.
        Mid-turn and pending agents are never released (a warning names them).

        Returns:
            How many agents were released.
        """
        with self._lock:
            outcome = self._state.shed_for_rss(rss, budget)
        self._carry_out(outcome)
        return len(outcome.releases)

    # -- introspection ---------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return len(self._state.entries)

    def __contains__(self, session_id: object) -> bool:
        with self._lock:
            return session_id in self._state.entries

    def keys(self) -> list[str]:
        """Cached session ids, least recently used first (pending ones included)."""
        with self._lock:
            return list(self._state.entries)

    def metrics(self) -> dict[str, Any]:
        """A snapshot of the counters and gauges, as a plain JSON-safe dict."""
        with self._lock:
            return self._state.metrics()

    # -- background work ---------------------------------------------------------------

    def start_sweeper(self) -> None:
        """Run :meth:`sweep_idle` every :attr:`sweep_interval` seconds on a daemon thread."""
        self._sweeper.start()

    def stop_sweeper(self, timeout: float | None = None) -> bool:
        """Stop the sweeper thread, if running; false if it did not stop within ``timeout``."""
        return self._sweeper.stop(timeout)

    def shutdown(self, *, hard: bool = False, timeout: float | None = 10.0) -> bool:
        """Stop the sweeper and let every agent go, then drain the releaser.

        Use ``hard=False`` for a drain (sessions resume on other workers and
        must find their tool state), ``hard=True`` when the sessions end with
        the process. Mid-turn agents are released when their turn ends.

        Returns:
            False if releases were still running at the timeout.
        """
        self.stop_sweeper(timeout)
        with self._lock:
            outcome = self._state.let_go_all(EvictionCause.SHUTDOWN, hard=hard)
        self._carry_out(outcome)
        return self._releaser.close(timeout)

    def __enter__(self) -> AgentCache[A]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # -- carrying decisions out (never under the lock) ------------------------------------

    def _carry_out(self, outcome: Outcome) -> None:
        for release in outcome.releases:
            self._releaser.submit(release)
        for message in outcome.warnings:
            logger.warning("%s", message)

    def _estimate(self, agent: A) -> int | None:
        if self.memory_budget is None:
            return None
        try:
            return int(agent.memory_estimate())
        except Exception:
            logger.warning(
                "memory_estimate() of session %s failed", agent.session_id, exc_info=True
            )
            return None
