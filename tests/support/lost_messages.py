"""Polling a waiting caller's handle until a failover's loss of its message is reported."""

from __future__ import annotations

from cluster.errors import MessageLost, TurnTimeout
from coordinator.ingress import TurnHandle


def reported_lost(handle: TurnHandle) -> bool:
    """One poll: ``True`` once the wait ends with ``MessageLost``, ``False`` while it waits.

    Raises:
        AssertionError: the message was answered (the test expects it lost), or the
            error does not tell the caller to resubmit with the same id.
    """
    try:
        handle.result(timeout=0)
    except MessageLost as exc:
        assert "same message id" in str(exc)
        return True
    except TurnTimeout:
        return False
    raise AssertionError(f"{handle.message_id} was answered, but a failover lost it")
