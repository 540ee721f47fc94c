"""Fakes shared by the unit tests (one place, as the style guide asks)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class FakeClock:
    """A clock the test moves by hand: ``clock()`` returns the current time."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeAgent:
    """Stands in for ``agent.AIAgent`` as the worker's agent cache sees it.

    Records every soft release (``release_clients``) and hard close, the thread
    each ran on, and whether it happened while a test had marked the agent as
    running a turn (``in_turn``). ``release_gate``, when given, makes
    ``release_clients`` block until the event is set (a slow release);
    ``on_release`` is called inside each release (to observe the caller's state).
    """

    _serial = 0

    def __init__(
        self,
        session_id: str = "s",
        *,
        last_activity_ts: float | None = None,
        memory: int = 0,
        release_gate: threading.Event | None = None,
        on_release: Callable[[FakeAgent], None] | None = None,
    ) -> None:
        FakeAgent._serial += 1
        self.serial = FakeAgent._serial
        self.session_id = session_id
        self.task_id = session_id
        self.client: object | None = object()
        self.last_activity_ts = last_activity_ts
        self.last_activity_desc = "built"
        self.api_call_count = 0
        self.tool_progress_callback: Any = None
        self.step_callback: Any = None
        self.stream_delta_callback: Any = None
        self.status_callback: Any = None
        self.reasoning_config: Any = None
        self.max_iterations: Any = 90
        self.cached_system_prompt = f"You are agent #{self.serial} of {session_id}."
        self.memory = memory
        self.release_gate = release_gate
        self.on_release = on_release
        self.in_turn = False
        self.released_in_turn = False
        self.soft_releases = 0
        self.hard_closes = 0
        self.release_threads: list[threading.Thread] = []
        self.released = threading.Event()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FakeAgent(#{self.serial}, {self.session_id!r})"

    def _record(self) -> None:
        with self._lock:
            self.release_threads.append(threading.current_thread())
            if self.in_turn:
                self.released_in_turn = True
        if self.on_release is not None:
            self.on_release(self)

    def release_clients(self) -> None:
        self._record()
        if self.release_gate is not None:
            self.release_gate.wait(timeout=30)
        with self._lock:
            self.soft_releases += 1
            self.client = None
        self.released.set()

    def close(self) -> None:
        self._record()
        with self._lock:
            self.hard_closes += 1
            self.client = None
        self.released.set()

    @property
    def releases(self) -> int:
        """Soft releases plus hard closes."""
        return self.soft_releases + self.hard_closes

    def memory_estimate(self) -> int:
        return self.memory


class InlineReleaser:
    """A release executor that runs each release at once on the submitting thread.

    Only for deterministic tests of cache bookkeeping: the real ``Releaser``
    runs releases on background threads, which the cache's contract requires.
    """

    def __init__(self) -> None:
        self.submitted: list[Any] = []

    def submit(self, release: Any) -> None:
        self.submitted.append(release)
        release.run()

    def wait_idle(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> bool:
        return True
