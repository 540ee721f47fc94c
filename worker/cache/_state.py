"""Bookkeeping of the agent cache, applied under the shell's lock.

:class:`CacheState` owns the ordered entries, the running set and the counters.
It applies the decisions of :mod:`worker.cache.policy` and returns an
:class:`Outcome` listing the releases and warnings to carry out; it takes no
lock, starts no thread, reads no clock, logs nothing and releases nothing
itself. :class:`worker.cache.AgentCache` calls it with its lock held and
carries every outcome out after dropping the lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic

from worker.cache.entry import A, CheckoutHandle, Entry, EntryInfo
from worker.cache.policy import (
    PENDING,
    EvictionCause,
    EvictionDecision,
    InvalidationDecision,
    plan_cap_eviction,
    plan_idle_sweep,
    plan_invalidation,
    plan_memory_eviction,
    plan_rss_eviction,
)
from worker.cache.releaser import Release

__all__ = ["CacheState", "Outcome"]


@dataclass(slots=True)
class Outcome:
    """What the shell must do once it has dropped the lock.

    Attributes:
        releases: agents to hand to the releaser.
        warnings: messages to log at WARNING level.
        found: :meth:`CacheState.let_go` found an entry.
        replaced: why :meth:`CacheState.claim` did not reuse a cached agent.
    """

    releases: list[Release] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    found: bool = False
    replaced: EvictionCause | None = None


class CacheState(Generic[A]):
    """Entries (LRU order), running set and counters; every method expects the lock held."""

    def __init__(
        self, entries: OrderedDict[str, Entry[A]], *, max_size: int, memory_budget: int | None
    ) -> None:
        self.entries = entries
        self.running: set[str] = set()
        self.max_size = max_size
        self.memory_budget = memory_budget
        self.memory_total = 0
        self.rss_bytes = 0  # the process' RSS at the last memory check (0: never checked)
        self.rss_budget: int | None = None  # the budget it was checked against
        self._rss_skipped: tuple[str, ...] = ()  # warned about at the last check
        self._rss_starved = False  # over the budget with nothing to shed at the last check
        self.counters = {
            name: 0
            for name in (
                "hits",
                "misses",
                "signature_mismatches",
                "served_elsewhere",
                "soft_releases",
                "hard_releases",
                "over_cap_events",
                "mid_turn_skips",
                "over_budget_events",
            )
        }
        self.evictions = {cause.value: 0 for cause in EvictionCause}

    # -- turns ----------------------------------------------------------------------

    def claim(
        self, session_id: str, signature: str, committed_turns: int, config_version: int
    ) -> tuple[Entry[A], CheckoutHandle[A] | None, Outcome]:
        """Mark the session mid-turn; returns its entry and, on a hit only, a handle.

        On a miss the entry is a new :data:`PENDING` one, for :meth:`fill_pending`.
        """
        outcome = Outcome()
        entry = self.entries.get(session_id)
        if entry is not None and entry.agent is not PENDING:
            refusal = self._refusal(entry, signature, committed_turns)
            if refusal is None:
                self.entries.move_to_end(session_id)
                self.running.add(session_id)
                self.counters["hits"] += 1
                handle = CheckoutHandle(session_id, entry.agent, entry, hit=True, replaced=None)
                return entry, handle, outcome
            outcome.replaced = refusal
            self._take(session_id, refusal, hard=False, outcome=outcome)
        self.counters["misses"] += 1
        pending: Entry[A] = Entry(PENDING, signature, committed_turns, config_version)
        self.entries[session_id] = pending
        self.running.add(session_id)
        return pending, None, outcome

    def _refusal(
        self, entry: Entry[A], signature: str, committed_turns: int
    ) -> EvictionCause | None:
        if entry.signature != signature:
            self.counters["signature_mismatches"] += 1
            return EvictionCause.SIGNATURE
        if entry.committed_turns != committed_turns:
            # Served elsewhere since (higher count) or reset elsewhere (lower):
            # either way this agent's transcript is not the session's history.
            self.counters["served_elsewhere"] += 1
            return EvictionCause.SERVED_ELSEWHERE
        return None

    def forget_pending(self, session_id: str, entry: Entry[A]) -> None:
        """Undo a claim whose build failed."""
        self.running.discard(session_id)
        if self.entries.get(session_id) is entry:
            del self.entries[session_id]

    def fill_pending(self, entry: Entry[A], agent: A, memory: int | None) -> Outcome:
        """Swap the built agent in for the marker, then enforce the limits."""
        entry.agent = agent
        self._set_memory(entry, memory)
        return self._enforce_limits(Outcome())

    def end_turn(self, handle: CheckoutHandle[A], memory: int | None) -> Outcome:
        """The turn is over: record its commit, release a stale entry, enforce limits."""
        session_id, entry = handle.session_id, handle._entry
        self.running.discard(session_id)
        outcome = Outcome()
        if handle._committed is not None:
            entry.committed_turns = handle._committed
        if handle._discard_hard is not None:
            entry.retire(handle._discard_cause, hard=handle._discard_hard)
        if self.entries.get(session_id) is not entry:
            return outcome
        if entry.retire_cause is not None:
            self._take(session_id, entry.retire_cause, hard=entry.retire_hard, outcome=outcome)
            return outcome
        self._set_memory(entry, memory)
        return self._enforce_limits(outcome)

    # -- direct manipulation --------------------------------------------------------------

    def insert(
        self,
        session_id: str,
        agent: A,
        signature: str,
        committed_turns: int,
        config_version: int,
        memory: int | None,
    ) -> Outcome:
        """Cache an idle agent as most recently used and enforce the limits."""
        outcome = Outcome()
        old = self.entries.get(session_id)
        if old is not None:
            if old.agent is agent:
                self.memory_total -= old.memory_bytes
                del self.entries[session_id]
            else:
                self._take(session_id, EvictionCause.REPLACED, hard=False, outcome=outcome)
        entry: Entry[A] = Entry(agent, signature, committed_turns, config_version)
        self.entries[session_id] = entry
        self._set_memory(entry, memory)
        return self._enforce_limits(outcome)

    def let_go(self, session_id: str, cause: EvictionCause, *, hard: bool) -> Outcome:
        """Release one session's entry now, or at its turn's end if it is mid-turn."""
        outcome = Outcome()
        entry = self.entries.get(session_id)
        if entry is None:
            return outcome
        outcome.found = True
        if session_id in self.running:
            entry.retire(cause, hard=hard)
        else:
            self._take(session_id, cause, hard=hard, outcome=outcome)
        return outcome

    def let_go_all(self, cause: EvictionCause, *, hard: bool) -> Outcome:
        """Release every entry now, or at its turn's end if it is mid-turn."""
        outcome = Outcome()
        for key in list(self.entries):
            if key in self.running:
                self.entries[key].retire(cause, hard=hard)
            else:
                self._take(key, cause, hard=hard, outcome=outcome)
        return outcome

    def invalidate(
        self, predicate: Callable[[EntryInfo], bool], cause: EvictionCause
    ) -> tuple[InvalidationDecision, Outcome]:
        """Apply :func:`plan_invalidation` for a predicate over :class:`EntryInfo`."""

        def matches(key: str, entry: Entry[A]) -> bool:
            info = EntryInfo(
                session_id=key,
                signature=entry.signature,
                committed_turns=entry.committed_turns,
                config_version=entry.config_version,
                mid_turn=key in self.running,
                stale=entry.retire_cause is not None,
            )
            return predicate(info)

        decision = plan_invalidation(self.entries, self.running, matches)
        outcome = Outcome()
        for key in decision.mark_stale:
            self.entries[key].retire(cause, hard=False)
        for key in decision.release_now:
            self._take(key, cause, hard=False, outcome=outcome)
        return decision, outcome

    def sweep(self, now: float, idle_ttl: float) -> Outcome:
        """Apply :func:`plan_idle_sweep`."""
        outcome = Outcome()
        self._apply(plan_idle_sweep(self.entries, self.running, now, idle_ttl), outcome)
        return outcome

    def shed_for_rss(self, rss: int, budget: int) -> Outcome:
        """Apply :func:`plan_rss_eviction`; warn about skipped mid-turn and pending entries."""
        self.rss_bytes, self.rss_budget = rss, budget
        outcome = Outcome()
        decision = plan_rss_eviction(self.entries, self.running, rss=rss, budget=budget)
        self._apply(decision, outcome)
        skipped = (*decision.skipped_mid_turn, *decision.skipped_pending)
        if skipped and skipped != self._rss_skipped:  # once per set, not at every check
            self.counters["mid_turn_skips"] += len(decision.skipped_mid_turn)
            outcome.warnings.append(
                f"worker memory (RSS {rss} bytes) is near its budget of {budget}: skipped "
                f"{len(decision.skipped_mid_turn)} mid-turn and {len(decision.skipped_pending)} "
                f"pending of the least recently used ({', '.join(skipped[:5])}); they are "
                "shed once their turn ends if memory is still high"
            )
        self._rss_skipped = skipped
        if decision.still_over:
            self.counters["over_budget_events"] += 1
        starved = decision.still_over and not decision.victims and not skipped
        if starved and not self._rss_starved:  # once, when it starts
            outcome.warnings.append(
                f"worker memory (RSS {rss} bytes) is near its budget of {budget} with no "
                "cached agent left to shed: the budget is too small for what the worker "
                "holds besides its agents (raise agent_cache_memory)"
            )
        self._rss_starved = starved
        return outcome

    # -- helpers ---------------------------------------------------------------------

    def _enforce_limits(self, outcome: Outcome) -> Outcome:
        cap = plan_cap_eviction(self.entries, self.running, self.max_size)
        self._apply(cap, outcome)
        skipped = (*cap.skipped_mid_turn, *cap.skipped_pending)
        if skipped:
            self.counters["mid_turn_skips"] += len(cap.skipped_mid_turn)
            outcome.warnings.append(
                f"agent cache is over its cap of {self.max_size} ({len(self.entries)} entries): "
                f"skipped {len(cap.skipped_mid_turn)} mid-turn and {len(cap.skipped_pending)} "
                f"pending of the least recently used ({', '.join(skipped[:5])}); they are "
                "evicted once their turn ends"
            )
        if cap.still_over:
            self.counters["over_cap_events"] += 1
        if self.memory_budget is not None:
            memory = plan_memory_eviction(
                self.entries, self.running, self.memory_budget, total_bytes=self.memory_total
            )
            self._apply(memory, outcome)
            if memory.still_over:
                self.counters["over_budget_events"] += 1
                outcome.warnings.append(
                    f"agent cache holds {self.memory_total} bytes, over its memory budget of "
                    f"{self.memory_budget}: the rest is held by mid-turn agents"
                )
        return outcome

    def _apply(self, decision: EvictionDecision, outcome: Outcome) -> None:
        for key in decision.victims:
            self._take(key, decision.cause, hard=False, outcome=outcome)

    def _take(self, key: str, cause: EvictionCause, *, hard: bool, outcome: Outcome) -> None:
        entry = self.entries.pop(key)
        self.memory_total -= entry.memory_bytes
        if entry.agent is PENDING:
            return
        outcome.releases.append(Release(key, entry.agent, hard, cause))
        self.evictions[cause.value] += 1
        self.counters["hard_releases" if hard else "soft_releases"] += 1

    def _set_memory(self, entry: Entry[A], memory: int | None) -> None:
        if memory is not None:
            self.memory_total += memory - entry.memory_bytes
            entry.memory_bytes = memory

    def metrics(self) -> dict[str, Any]:
        """Counters and gauges as a plain dict (``evictions`` by cause)."""
        pending = sum(
            1 for key in self.running if getattr(self.entries.get(key), "agent", None) is PENDING
        )
        return {
            **self.counters,
            "evictions": dict(self.evictions),
            "size": len(self.entries),
            "cap": self.max_size,
            "running": len(self.running),
            "pending": pending,
            "memory_bytes": self.memory_total,
            "memory_budget": self.memory_budget,
            "rss_bytes": self.rss_bytes,
            "rss_budget": self.rss_budget,
        }
