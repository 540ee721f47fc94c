"""Where a running turn may take in messages the user sent while it ran (steer, collect).

The agent's tool loop asks its ``steer_callback`` for new user messages at
its safe points: before each model call (after the tool results of the
previous one, so no tool call is left without its result) and after a final
reply. A message taken in must still get a model call that answers it, so
the loop takes none once the turn is stopped or has no model call left.
"""

from __future__ import annotations

__all__ = ["may_take_messages"]


def may_take_messages(*, next_iteration: int, max_iterations: int, stopped: bool) -> bool:
    """Whether the loop may take in new user messages before model call ``next_iteration``.

    Args:
        next_iteration: The model call that would answer them (1-based).
        max_iterations: The turn's limit of model calls.
        stopped: The turn was interrupted (it makes no further model call).
    """
    return not stopped and next_iteration <= max_iterations
