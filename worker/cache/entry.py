"""The public data of the agent cache: entries, checkout handles, invalidation views.

An :class:`Entry` is what the cache keeps per session: the agent (or the
:data:`~worker.cache.policy.PENDING` marker while it is built), the signature
it was built for and the committed-turn count it knows of. A
:class:`CheckoutHandle` is one turn's hold on an entry. :class:`EntryInfo` and
:class:`InvalidationResult` are the read-only views of
:meth:`worker.cache.AgentCache.invalidate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from cluster.errors import AgentCacheError
from worker.cache.agent import CachedAgent
from worker.cache.policy import EvictionCause, Pending

__all__ = ["A", "CheckoutHandle", "Entry", "EntryInfo", "InvalidationResult"]

A = TypeVar("A", bound=CachedAgent)


@dataclass(eq=False, slots=True)
class Entry(Generic[A]):
    """One cached session: its agent (or :data:`PENDING`) and what it was built for."""

    agent: A | Pending
    signature: str
    committed_turns: int
    config_version: int
    memory_bytes: int = 0
    retire_cause: EvictionCause | None = None
    retire_hard: bool = False

    def retire(self, cause: EvictionCause, *, hard: bool) -> None:
        """Never reuse this entry; release it when its turn ends (hard wins over soft)."""
        if self.retire_cause is None or (hard and not self.retire_hard):
            self.retire_cause = cause
        self.retire_hard = self.retire_hard or hard


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """Read-only view of an entry, handed to :meth:`AgentCache.invalidate` predicates.

    Attributes:
        session_id: the session key.
        signature: the signature the agent was built for.
        committed_turns: committed turns the agent knows of.
        config_version: the config version recorded at checkout.
        mid_turn: the session has a turn checked out (or its agent is being built).
        stale: already invalidated; released when its turn ends.
    """

    session_id: str
    signature: str
    committed_turns: int
    config_version: int
    mid_turn: bool
    stale: bool


@dataclass(frozen=True, slots=True)
class InvalidationResult:
    """What :meth:`AgentCache.invalidate` did.

    Attributes:
        released: idle sessions whose agents were soft-released at once.
        marked_stale: mid-turn (or pending) sessions whose agents will never be
            reused and are released when their turn ends.
    """

    released: tuple[str, ...]
    marked_stale: tuple[str, ...]


class CheckoutHandle(Generic[A]):
    """One turn's hold on a session's agent, yielded by :meth:`AgentCache.checkout`.

    Attributes:
        session_id: the session key.
        agent: the agent to run the turn with.
        hit: the agent came from the cache (false: it was built for this turn).
        replaced: on a miss, why a cached agent was not reused
            (:attr:`EvictionCause.SIGNATURE` or :attr:`EvictionCause.SERVED_ELSEWHERE`),
            ``None`` when nothing was cached.
    """

    __slots__ = (
        "_committed",
        "_discard_cause",
        "_discard_hard",
        "_entry",
        "agent",
        "hit",
        "replaced",
        "session_id",
    )

    def __init__(
        self,
        session_id: str,
        agent: A,
        entry: Entry[A],
        *,
        hit: bool,
        replaced: EvictionCause | None,
    ) -> None:
        self.session_id = session_id
        self.agent = agent
        self.hit = hit
        self.replaced = replaced
        self._entry = entry
        self._committed: int | None = None
        self._discard_hard: bool | None = None
        self._discard_cause = EvictionCause.DISCARDED

    def committed(self, committed_turns: int) -> None:
        """Record the session's committed-turn count after this turn's commit.

        The entry remembers it when the turn ends; the next checkout must present
        the same count to reuse the agent.

        Raises:
            AgentCacheError: ``committed_turns`` is negative.
        """
        if committed_turns < 0:
            raise AgentCacheError(f"committed_turns must be >= 0, got {committed_turns}")
        self._committed = committed_turns

    def discard(self, *, hard: bool = False) -> None:
        """Do not keep the agent: release it when the turn ends (soft unless ``hard``).

        Used after a fallback-model turn, so the next message retries the primary.
        """
        self._discard_hard = hard or bool(self._discard_hard)

    def turn_failed(self) -> None:
        """The turn ends without a commit: release the agent when it ends (cause ``failed_turn``).

        Its in-memory transcript may hold messages the shared store does not, so
        it must not serve a later turn. The checkout calls this when its block
        raises; a turn cut off by a drain calls it before leaving the block.
        """
        if self._committed is None and self._discard_hard is None:
            self._discard_hard = False
            self._discard_cause = EvictionCause.FAILED_TURN

    @property
    def is_discarded(self) -> bool:
        """Whether :meth:`discard` was called."""
        return self._discard_hard is not None
