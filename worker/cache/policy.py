"""Eviction policy of the local agent cache: pure decisions, no mechanism.

Every function here is a pure function of the cache entries, the running set
and (where time matters) ``now``: no locks, no clock reads, no logging, no
release calls. Each returns a decision naming the victims and what it had to
skip; :class:`worker.cache.AgentCache` holds the lock, carries the decision out
and hands the victims to the background releaser.

Conventions shared by all functions:

* ``entries`` is any :class:`~collections.abc.Mapping` of session id to entry;
  its iteration order is the LRU order, least recently used first. A plain
  ``dict`` works (its order is then insertion order).
* ``running`` is any container of session ids with a turn in progress on this
  worker, including turns whose agent is still being built. Those entries are
  never victims. The check is per session id, so one session's claimed turn
  (or pending build) never protects another session's entry.
* An entry whose agent is :data:`PENDING` (being built for a claimed turn) is
  never a victim either.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Final, Literal, Protocol, TypeVar

__all__ = [
    "PENDING",
    "EvictionCause",
    "EvictionDecision",
    "InvalidationDecision",
    "Pending",
    "PolicyEntry",
    "plan_cap_eviction",
    "plan_idle_sweep",
    "plan_invalidation",
    "plan_memory_eviction",
    "plan_rss_eviction",
]

RSS_HIGH_WATER = 0.9
"""Shedding starts when the process' RSS passes this share of its memory budget."""
RSS_LOW_WATER = 0.8
"""...and frees (by the agents' estimates) what brings it back to this share."""


class Pending(enum.Enum):
    """Type of the :data:`PENDING` marker (an enum, so type checkers narrow ``is PENDING``)."""

    PENDING = "pending"

    def __repr__(self) -> str:
        return "PENDING"


#: Stands in for the agent of an entry whose turn is claimed while the agent is built.
PENDING: Final[Literal[Pending.PENDING]] = Pending.PENDING


class EvictionCause(enum.StrEnum):
    """Why an agent left the cache (the keys of the ``evictions`` metric)."""

    CAP = "cap"
    IDLE = "idle"
    MEMORY = "memory"
    SIGNATURE = "signature"
    SERVED_ELSEWHERE = "served_elsewhere"
    CONFIG_BUST = "config_bust"
    CLEARED = "cleared"
    EVICTED = "evicted"
    DISCARDED = "discarded"
    FAILED_TURN = "failed_turn"
    REPLACED = "replaced"
    SESSION_END = "session_end"
    SHUTDOWN = "shutdown"


class PolicyEntry(Protocol):
    """What the policy reads of an entry."""

    @property
    def agent(self) -> object:
        """The cached agent, or :data:`PENDING`."""
        ...

    @property
    def memory_bytes(self) -> int:
        """The agent's last known memory estimate (0 when not measured)."""
        ...


E = TypeVar("E", bound=PolicyEntry)


@dataclass(frozen=True, slots=True)
class EvictionDecision:
    """Outcome of one eviction pass.

    Attributes:
        cause: why the victims go.
        victims: session ids to evict, in LRU order.
        skipped_mid_turn: session ids the pass would have evicted but that are mid-turn.
        skipped_pending: session ids the pass would have evicted but whose agent is
            still being built.
        still_over: the cache remains over its cap (or memory budget) once the
            victims are gone, because protected entries were skipped.
    """

    cause: EvictionCause
    victims: tuple[str, ...] = ()
    skipped_mid_turn: tuple[str, ...] = ()
    skipped_pending: tuple[str, ...] = ()
    still_over: bool = False


@dataclass(frozen=True, slots=True)
class InvalidationDecision:
    """Outcome of invalidating the entries that match a predicate.

    Attributes:
        release_now: idle matches, to be evicted (soft-released) at once.
        mark_stale: matches with a turn in progress (or pending build): never
            reused again, released when their turn ends.
    """

    release_now: tuple[str, ...] = ()
    mark_stale: tuple[str, ...] = ()


def _protected(key: str, entry: PolicyEntry, running: Container[str]) -> str | None:
    if entry.agent is PENDING:
        return "pending"
    if key in running:
        return "mid-turn"
    return None


def plan_cap_eviction(
    entries: Mapping[str, PolicyEntry], running: Container[str], cap: int
) -> EvictionDecision:
    """Choose victims to bring the cache back to ``cap`` entries.

    Only the oldest ``len(entries) - cap`` entries (the excess window) are
    considered. A mid-turn or pending entry in the window is skipped and NOT
    replaced by a newer victim, so the cache may stay over the cap until that
    turn ends (``still_over`` is then true).

    Args:
        entries: session id -> entry, least recently used first.
        running: session ids with a turn in progress.
        cap: the maximum number of entries (>= 0).

    Returns:
        The decision, with cause :attr:`EvictionCause.CAP`.
    """
    excess = len(entries) - cap
    if excess <= 0:
        return EvictionDecision(EvictionCause.CAP)
    victims: list[str] = []
    mid_turn: list[str] = []
    pending: list[str] = []
    for key, entry in islice(entries.items(), excess):
        why = _protected(key, entry, running)
        if why is None:
            victims.append(key)
        else:
            (mid_turn if why == "mid-turn" else pending).append(key)
    return EvictionDecision(
        EvictionCause.CAP,
        victims=tuple(victims),
        skipped_mid_turn=tuple(mid_turn),
        skipped_pending=tuple(pending),
        still_over=len(entries) - len(victims) > cap,
    )


def plan_idle_sweep(
    entries: Mapping[str, PolicyEntry], running: Container[str], now: float, idle_ttl: float
) -> EvictionDecision:
    """Choose the agents idle for longer than ``idle_ttl`` seconds.

    Idleness is ``now - agent.last_activity_ts`` (wall-clock scale). An agent
    with no timestamp (``None`` or no such attribute) is left alone, and so is a
    pending entry or a mid-turn one (expired mid-turn ones are reported as skipped).

    Args:
        entries: session id -> entry, least recently used first.
        running: session ids with a turn in progress.
        now: the current wall-clock time.
        idle_ttl: seconds of inactivity after which an agent is evicted.

    Returns:
        The decision, with cause :attr:`EvictionCause.IDLE`.
    """
    victims: list[str] = []
    mid_turn: list[str] = []
    for key, entry in entries.items():
        if entry.agent is PENDING:
            continue
        last = getattr(entry.agent, "last_activity_ts", None)
        if last is None or now - last <= idle_ttl:
            continue
        if key in running:
            mid_turn.append(key)
        else:
            victims.append(key)
    return EvictionDecision(
        EvictionCause.IDLE, victims=tuple(victims), skipped_mid_turn=tuple(mid_turn)
    )


def plan_memory_eviction(
    entries: Mapping[str, PolicyEntry],
    running: Container[str],
    budget: int,
    *,
    total_bytes: int | None = None,
) -> EvictionDecision:
    """Choose least recently used idle agents to evict until memory fits ``budget``.

    Args:
        entries: session id -> entry, least recently used first.
        running: session ids with a turn in progress (their bytes count but
            they are never victims).
        budget: the memory budget in bytes.
        total_bytes: the sum of ``memory_bytes`` over ``entries`` if the caller
            keeps it; computed otherwise.

    Returns:
        The decision, with cause :attr:`EvictionCause.MEMORY`; ``still_over``
        when only protected entries are left to free.
    """
    total = sum(e.memory_bytes for e in entries.values()) if total_bytes is None else total_bytes
    if total <= budget:
        return EvictionDecision(EvictionCause.MEMORY)
    victims: list[str] = []
    mid_turn: list[str] = []
    pending: list[str] = []
    for key, entry in entries.items():
        if total <= budget:
            break
        why = _protected(key, entry, running)
        if why is None:
            victims.append(key)
            total -= entry.memory_bytes
        elif entry.memory_bytes:
            (mid_turn if why == "mid-turn" else pending).append(key)
    return EvictionDecision(
        EvictionCause.MEMORY,
        victims=tuple(victims),
        skipped_mid_turn=tuple(mid_turn),
        skipped_pending=tuple(pending),
        still_over=total > budget,
    )


def plan_rss_eviction(
    entries: Mapping[str, PolicyEntry], running: Container[str], *, rss: int, budget: int
) -> EvictionDecision:
    """Choose least recently used idle agents to shed while the process' RSS nears ``budget``.

    Nothing is shed while ``rss`` is at most :data:`RSS_HIGH_WATER` of the
    budget. Past it, victims are taken from the least recently used end
    until their memory estimates add up to what brings ``rss`` back to
    :data:`RSS_LOW_WATER` of the budget (an entry without an estimate counts
    as one byte: it is shed, and the next reading tells whether that was
    enough). Mid-turn and pending entries are skipped and reported (the next
    older idle entries are shed instead); ``still_over`` says the estimates
    of what could be shed fell short.

    Args:
        entries: session id -> entry, least recently used first.
        running: session ids with a turn in progress.
        rss: the process' resident memory now, in bytes.
        budget: the memory budget, in bytes.

    Returns:
        The decision, with cause :attr:`EvictionCause.MEMORY`.
    """
    if rss <= budget * RSS_HIGH_WATER:
        return EvictionDecision(EvictionCause.MEMORY)
    need = rss - budget * RSS_LOW_WATER
    freed = 0
    victims: list[str] = []
    mid_turn: list[str] = []
    pending: list[str] = []
    for key, entry in entries.items():
        if freed >= need:
            break
        why = _protected(key, entry, running)
        if why is None:
            victims.append(key)
            freed += max(1, entry.memory_bytes)
        else:
            (mid_turn if why == "mid-turn" else pending).append(key)
    return EvictionDecision(
        EvictionCause.MEMORY,
        victims=tuple(victims),
        skipped_mid_turn=tuple(mid_turn),
        skipped_pending=tuple(pending),
        still_over=freed < need,
    )


def plan_invalidation(
    entries: Mapping[str, E],
    running: Container[str],
    matches: Callable[[str, E], bool],
) -> InvalidationDecision:
    """Split the entries matching ``matches`` into release-now and mark-stale.

    Args:
        entries: session id -> entry.
        running: session ids with a turn in progress.
        matches: called once per entry; true means the entry must not be reused.

    Returns:
        Idle matches to release now; running or pending matches to mark stale.
    """
    release_now: list[str] = []
    mark_stale: list[str] = []
    for key, entry in entries.items():
        if not matches(key, entry):
            continue
        if _protected(key, entry, running) is None:
            release_now.append(key)
        else:
            mark_stale.append(key)
    return InvalidationDecision(release_now=tuple(release_now), mark_stale=tuple(mark_stale))
