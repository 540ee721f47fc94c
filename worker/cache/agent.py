"""The agent as the cache sees it, and how a cached agent is prepared for a turn.

The real agent class (``agent.AIAgent``) lives in another package; the cache is
written against the small :class:`CachedAgent` protocol below so that it can be
tested with fakes and does not import the agent package.

Two per-turn steps happen on a cached agent instead of rebuilding it (which
would change the frozen system prompt object and cold-start the provider's
prompt cache):

* :func:`apply_turn_state` sets the per-message state (callbacks, reasoning
  config, iteration budget); the cache does it on every checkout.
* :func:`init_for_turn` resets the per-turn counters; the worker calls it with
  the turn's interrupt depth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol, TypedDict

from agent.activity import NEW_TURN_ACTIVITY_DESC, TurnTimedAgent, init_for_turn
from cluster.errors import AgentCacheError

__all__ = [
    "CALLBACK_KEYS",
    "NEW_TURN_ACTIVITY_DESC",
    "TURN_STATE_KEYS",
    "CachedAgent",
    "TurnState",
    "TurnTimedAgent",
    "apply_turn_state",
    "check_turn_state",
    "init_for_turn",
]

#: Per-message callbacks: set on every checkout, ``None`` when the message brings none,
#: so a callback of the previous message (a closed stream, say) is never called again.
CALLBACK_KEYS: Final = (
    "tool_progress_callback",
    "step_callback",
    "stream_delta_callback",
    "status_callback",
)

#: Every key :func:`apply_turn_state` accepts.
TURN_STATE_KEYS: Final = (*CALLBACK_KEYS, "reasoning_config", "max_iterations")


class CachedAgent(TurnTimedAgent, Protocol):
    """The agent as the cache uses it (``agent.AIAgent`` satisfies it).

    The per-turn settables are typed ``Any``: protocol attributes are invariant,
    and the cache only assigns what the worker hands it.

    Attributes:
        last_activity_ts: wall-clock (``time.time()`` scale) time of the agent's
            last activity, ``None`` if it never had one; the idle sweep reads it.
    """

    tool_progress_callback: Any
    step_callback: Any
    stream_delta_callback: Any
    status_callback: Any
    reasoning_config: Any
    max_iterations: Any

    @property
    def session_id(self) -> str:
        """The session this agent serves."""
        ...

    @property
    def client(self) -> Any:
        """The provider client; ``None`` once released."""
        ...

    def release_clients(self) -> None:
        """Soft release: close the LLM clients, drop the transcript; keep tool state."""
        ...

    def close(self) -> None:
        """Hard release: also tear down everything keyed by the session's task id."""
        ...

    def memory_estimate(self) -> int:
        """Bytes this agent holds (mostly its transcript)."""
        ...


class TurnState(TypedDict, total=False):
    """Per-message state set on a (cached or fresh) agent at checkout."""

    tool_progress_callback: Callable[..., Any] | None
    step_callback: Callable[..., Any] | None
    stream_delta_callback: Callable[..., Any] | None
    status_callback: Callable[..., Any] | None
    reasoning_config: Mapping[str, Any] | None
    max_iterations: int


def check_turn_state(turn_state: Mapping[str, Any]) -> None:
    """Reject keys :func:`apply_turn_state` does not know.

    Raises:
        AgentCacheError: naming the unknown keys and the accepted ones.
    """
    unknown = sorted(set(turn_state) - set(TURN_STATE_KEYS))
    if unknown:
        raise AgentCacheError(
            f"unknown turn_state key(s) {unknown}; accepted keys are {list(TURN_STATE_KEYS)}"
        )


def apply_turn_state(agent: CachedAgent, turn_state: Mapping[str, Any]) -> None:
    """Set one message's state on an agent without rebuilding it.

    Callbacks are always assigned (``None`` when absent from ``turn_state``);
    ``reasoning_config`` and ``max_iterations`` are assigned only when present,
    so the values the agent was built with stay otherwise. Nothing else of the
    agent is touched: its frozen system prompt stays the very same object.

    Args:
        agent: the agent about to run the turn.
        turn_state: a :class:`TurnState` mapping.

    Raises:
        AgentCacheError: ``turn_state`` has a key outside :data:`TURN_STATE_KEYS`.
    """
    check_turn_state(turn_state)
    for key in CALLBACK_KEYS:
        setattr(agent, key, turn_state.get(key))
    if "reasoning_config" in turn_state:
        agent.reasoning_config = turn_state["reasoning_config"]
    if "max_iterations" in turn_state:
        agent.max_iterations = turn_state["max_iterations"]
