"""Continuous chat traffic for fault tests: each session sends its next message when answered."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from cluster.errors import AgentClusterError, TurnTimeout
from coordinator.ingress import Coordinator, Reply


@dataclass
class Traffic:
    """Per-session loops over one coordinator; every message is resubmitted by id until answered."""

    coordinator: Coordinator
    sessions: int
    prefix: str = "chat"
    replies: dict[str, list[Reply]] = field(default_factory=lambda: defaultdict(list))
    accepted: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    resubmits: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._session, args=(f"{self.prefix}-{i}",), daemon=True)
            for i in range(self.sessions)
        ]

    def start(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 120.0) -> None:
        """Stop sending new messages; wait for every accepted one to be answered."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "some messages were never answered"

    def _session(self, session: str) -> None:
        n = 0
        while not self._stop.is_set():
            text = f"{session} message {n}"
            message_id = f"{session}-{n}"
            reply = self._until_answered(session, text, message_id)
            with self._lock:
                self.replies[session].append(reply)
            n += 1

    def _until_answered(self, session: str, text: str, message_id: str) -> Reply:
        accepted = False
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                handle = self.coordinator.submit_async(session, text, message_id=message_id)
                if not accepted:
                    with self._lock:
                        self.accepted[session].append(text)
                    accepted = True
                return handle.result(timeout=15)
            except TurnTimeout:
                with self._lock:
                    self.resubmits += 1
            except AgentClusterError as exc:  # not accepted (no worker, Redis down): retry
                with self._lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.2)
        raise AssertionError(f"{message_id} not answered within 90 s")

    def check(self) -> int:
        """Every accepted message answered once, in order; returns how many were answered."""
        answered = 0
        for session, texts in self.accepted.items():
            replies = self.replies[session]
            assert len(replies) == len(texts), (
                f"{session}: {len(texts)} accepted, {len(replies)} answered"
            )
            assert [r.raw["turn"] for r in replies] == list(range(1, len(replies) + 1)), session
            answered += len(replies)
        return answered
