"""The per-turn activity clock of an agent: one rule for the agent and the worker's cache.

:func:`init_for_turn` resets an agent's per-turn counters before a turn;
``AIAgent.init_turn`` and the worker's cache both use it, so the rule for an
interrupted turn re-entered by the user (keep the inactivity clock) is
written once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, Protocol

from cluster.errors import AgentCacheError

__all__ = ["NEW_TURN_ACTIVITY_DESC", "TurnTimedAgent", "init_for_turn"]

NEW_TURN_ACTIVITY_DESC: Final = "starting new turn (cached)"
"""The last-activity description of an agent at the start of a new message's turn."""


class TurnTimedAgent(Protocol):
    """What :func:`init_for_turn` touches: the per-turn counters of an agent."""

    api_call_count: int
    last_activity_ts: float | None
    last_activity_desc: str


def init_for_turn(
    agent: TurnTimedAgent,
    interrupt_depth: int,
    *,
    clock: Callable[[], float] = time.time,
) -> None:
    """Reset an agent's per-turn counters before running a turn.

    The API call counter always restarts at 0. At depth 0 (a new message) the
    last-activity timestamp becomes ``clock()`` and its description
    :data:`NEW_TURN_ACTIVITY_DESC`. At depth > 0 (the turn was re-entered because
    the user interrupted a stuck turn) both are kept, so the inactivity watchdog
    still fires for a turn stuck in an interrupt loop.

    Args:
        agent: the agent about to run the turn.
        interrupt_depth: 0 for a new message, > 0 for a re-entered turn.
        clock: wall clock (``time.time()`` scale).

    Raises:
        AgentCacheError: ``interrupt_depth`` is negative.
    """
    if interrupt_depth < 0:
        raise AgentCacheError(f"interrupt_depth must be >= 0, got {interrupt_depth}")
    agent.api_call_count = 0
    if interrupt_depth == 0:
        agent.last_activity_ts = clock()
        agent.last_activity_desc = NEW_TURN_ACTIVITY_DESC
