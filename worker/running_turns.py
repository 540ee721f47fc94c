"""The turns running on this worker, so an interrupt or a drain's cut-off can reach them.

An interrupt event (``/stop``, a newer message's ``interrupt`` or
``rollback``) names the session and the lease token of the turn it means. It
may arrive while that turn is still loading its session or building its
agent, or before the turn started here at all: it is then kept, and applied
by the hook the agent calls when its model loop starts (the loop clears older
interrupts on entry, so an earlier ``interrupt()`` would be lost).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from agent import AIAgent

__all__ = ["CUT_OFF_REASON", "RunningTurns"]

# Interrupt requests kept for turns that have not reached their model loop yet.
_PENDING_INTERRUPTS = 1024

CUT_OFF_REASON = "worker draining: turn handed to another worker"
"""What a turn cut off by a drain past its timeout says stopped it."""


@dataclass
class _Turn:
    token: int
    agent: AIAgent
    loop_started: bool = False


class RunningTurns:
    """Registry of this worker's running turns (session -> lease token, agent)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, _Turn] = {}
        # (session, lease token) -> reason: interrupts that arrived before their model loop ran
        self._pending: dict[tuple[str, int], str] = {}
        self._cut_off = threading.Event()

    @property
    def cut_off(self) -> bool:
        """Whether :meth:`cut_off_all` was called (the worker hands its turns over)."""
        return self._cut_off.is_set()

    def started(self, session_key: str, token: int, agent: AIAgent) -> Callable[[], None]:
        """Register the session's turn under lease ``token``.

        Returns:
            The hook the agent calls when its model loop starts: it applies an
            interrupt that arrived earlier, or the drain's cut-off.
        """
        with self._lock:
            self._running[session_key] = _Turn(token, agent)

        def loop_started() -> None:
            with self._lock:
                turn = self._running.get(session_key)
                if turn is None or turn.token != token:
                    return
                turn.loop_started = True
                reason = self._pending.pop((session_key, token), None)
            if reason is None and self._cut_off.is_set():
                reason = CUT_OFF_REASON
            if reason is not None:
                agent.interrupt(reason)

        return loop_started

    def ended(self, session_key: str) -> None:
        """The session's turn left its model loop."""
        with self._lock:
            self._running.pop(session_key, None)

    def interrupt(self, session_key: str, token: int, reason: str) -> bool:
        """Stop the session's turn under lease ``token`` now, or once its model loop starts.

        Returns:
            Whether that turn is running here now (else the request waits for it).
        """
        with self._lock:
            turn = self._running.get(session_key)
            current = turn is not None and turn.token == token
            if turn is None or not current or not turn.loop_started:
                self._pending[(session_key, token)] = reason
                while len(self._pending) > _PENDING_INTERRUPTS:
                    self._pending.pop(next(iter(self._pending)))
                return current
        turn.agent.interrupt(reason)
        return True

    def cut_off_all(self) -> int:
        """Interrupt every running turn for a hand-over; turns yet to start their loop stop there.

        Returns:
            How many turns were registered.
        """
        self._cut_off.set()
        with self._lock:
            turns = list(self._running.values())
        for turn in turns:
            if turn.loop_started:
                turn.agent.interrupt(CUT_OFF_REASON)
        return len(turns)
