"""Client traffic of the chaos test: many sessions, each a conversation in order.

Every session sends its messages one after the other: message ``n`` gets the
unique id ``<session>-m<n>`` and the text ``"<session> msg <n>"`` (a seeded
share of them wrapped as ``!sh sleep S; echo <session> msg <n>`` so the offline
model calls the terminal tool and turns are in flight when the chaos strikes).
The next message is submitted only once the previous one was answered.

The product's contract drives the retries: a submission that raised is retried
under the same id; an accepted message without a reply after
``attempt_timeout`` seconds, or answered with an error saying it was cut off,
is resubmitted under the same id (it must be answered once). A wait that ends
with ``NotReplicated`` or ``MessageLost`` (a Redis failover: the message or its
reply was not acknowledged) is resubmitted under the same id at once. A message counts
as *accepted* once one ``submit_async`` for it returned. Nothing here blocks for
long: replies are polled (``TurnHandle.result(timeout=0)``), so one stuck
message does not stall the other sessions of its client thread, and every loop
ends by itself at the global deadline.
"""

from __future__ import annotations

import random
import re
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cluster.errors import InvalidMessage, MessageLost, NotReplicated, TurnFailed, TurnTimeout
from cluster.settings import ClusterSettings
from coordinator.ingress import Coordinator, TurnHandle

POLL_INTERVAL = 0.05
SUBMIT_BACKOFF = 0.25
# A TurnFailed whose text matches this was cut off by the infrastructure (an
# outage, a lost lease, a drain) rather than refused: it is resubmitted.
TRANSIENT_FAILURE_RE = re.compile(
    r"cut off|connection|timeout|timed out|lease|redis|drain|interrupt|try again|resubmit|"
    r"busy|loading|unavailable|shutting down",
    re.IGNORECASE,
)


@dataclass
class MessageRecord:
    """Everything the client saw of one message."""

    session: str
    index: int
    message_id: str
    text: str
    shell: bool
    routed_to: list[tuple[float, str]] = field(default_factory=list)
    submit_errors: Counter[str] = field(default_factory=Counter)
    accepted_at: float | None = None
    resubmissions: int = 0
    attempt_timeouts: int = 0
    after_timeout: list[str] = field(default_factory=list)
    """What each resubmission after an attempt timeout was told: ``queued`` (the
    message's job was gone or in no list: it was queued again), ``pending`` (its
    job still waited or ran) or ``answered`` (its reply was stored)."""
    poll_errors: Counter[str] = field(default_factory=Counter)
    replies: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    answered_at: float | None = None
    gave_up: str | None = None

    @property
    def tag(self) -> str:
        return f"{self.session} msg {self.index}"

    @property
    def accepted(self) -> bool:
        return self.accepted_at is not None

    @property
    def answered(self) -> bool:
        return bool(self.replies)

    def text_ok(self, reply_text: str) -> bool:
        """Whether an ok reply's text is what the offline model answers to this message."""
        if self.shell:
            return reply_text.startswith(f"[terminal] {self.tag}")
        return reply_text == f"echo: {self.text}"


def message_text(seed: int, session: str, index: int, sh_fraction: float, sh_sleep: float) -> str:
    """The text of a session's message ``index`` (a pure function of the seed)."""
    tag = f"{session} msg {index}"
    if random.Random(f"{seed}/{session}/{index}").random() < sh_fraction:
        return f"!sh sleep {sh_sleep:g}; echo {tag}"
    return tag


def submit_record(
    coordinator: Coordinator, record: MessageRecord, now: float, *, strategy: str = "enqueue"
) -> TurnHandle | bool:
    """Submit (or resubmit, same id) ``record``: its handle, or ``True`` refused, ``False`` retry.

    A refusal (``InvalidMessage``) is a harness or product bug: the record gives
    up. Any other error (NoLiveWorkers, Redis errors, ...) is retried with the
    same message id after ``SUBMIT_BACKOFF``. An accepted submit records where
    it went and whether it was a resubmission.
    """
    try:
        handle = coordinator.submit_async(
            record.session, record.text, message_id=record.message_id, strategy=strategy
        )
    except InvalidMessage as exc:  # refused outright: a harness or product bug
        record.submit_errors[type(exc).__name__] += 1
        record.gave_up = f"refused: {exc}"
        return True
    except Exception as exc:  # NoLiveWorkers, redis errors, ...: retry the same id
        record.submit_errors[type(exc).__name__] += 1
        return False
    record.routed_to.append((round(now, 2), handle.worker_id))
    if record.accepted_at is None:
        record.accepted_at = now
    else:
        record.resubmissions += 1
        if len(record.after_timeout) < record.attempt_timeouts:
            record.after_timeout.append(handle.status)
    return handle


@dataclass
class TrafficConfig:
    """How the clients behave.

    Attributes:
        seed: Seeds the message texts.
        sessions: Number of sessions (conversations).
        threads: Client threads (each drives ``sessions / threads`` sessions).
        traffic_end: Seconds after the start at which no new message is begun.
        deadline: Seconds after the start at which every client gives up.
        attempt_timeout: Seconds without a reply before a resubmission.
        sh_fraction: Share of messages that run a shell command.
        sh_sleep: Seconds those commands sleep.
    """

    seed: int
    sessions: int
    threads: int
    traffic_end: float
    deadline: float
    attempt_timeout: float = 10.0
    sh_fraction: float = 0.3
    sh_sleep: float = 0.3


@dataclass
class _SessionState:
    name: str
    records: list[MessageRecord] = field(default_factory=list)
    current: MessageRecord | None = None
    handle: TurnHandle | None = None
    attempt_started: float = 0.0
    next_try: float = 0.0
    done: bool = False


class Traffic:
    """Client threads, each with its own :class:`Coordinator` (one ingress each)."""

    def __init__(
        self, config: TrafficConfig, settings: ClusterSettings, clock: Callable[[], float]
    ) -> None:
        """Prepare the sessions; ``clock()`` returns seconds since the run's start."""
        self.config = config
        self.settings = settings
        self.clock = clock
        self.sessions = [_SessionState(f"s{i:03d}") for i in range(config.sessions)]
        self.errors: list[str] = []
        self._abort = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        count = max(1, min(self.config.threads, len(self.sessions)))
        for i in range(count):
            mine = self.sessions[i::count]
            thread = threading.Thread(target=self._client, args=(mine,), name=f"client-{i}")
            thread.start()
            self._threads.append(thread)

    def end_at(self, traffic_end: float, deadline: float) -> None:
        """Move the moment no new message is begun, and the clients' final deadline."""
        self.config.traffic_end = traffic_end
        self.config.deadline = deadline

    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def abort(self) -> None:
        self._abort.set()

    def join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))

    def records(self) -> list[MessageRecord]:
        return [r for s in self.sessions for r in list(s.records)]

    def progress(self) -> str:
        """The counts of a progress line: accepted, answered, waiting, resubmits, errors."""
        records = self.records()
        waiting = sum(r.accepted and not r.answered and r.gave_up is None for r in records)
        return (
            f"accepted {sum(r.accepted for r in records)} "
            f"answered {sum(r.answered for r in records)} waiting {waiting} "
            f"resubmits {sum(r.resubmissions for r in records)} "
            f"submit-errors {sum(sum(r.submit_errors.values()) for r in records)}"
        )

    # -- one client thread -------------------------------------------------------

    def _client(self, sessions: list[_SessionState]) -> None:
        coordinator: Coordinator | None = None
        try:
            coordinator = Coordinator(settings=self.settings)
            while not self._abort.is_set() and self.clock() < self.config.deadline:
                progressed = False
                active = False
                for state in sessions:
                    if state.done:
                        continue
                    active = True
                    progressed |= self._step(coordinator, state, self.clock())
                if not active:
                    break
                if not progressed:
                    self._abort.wait(POLL_INTERVAL)
        except Exception:  # a harness bug must show in the report, not kill pytest
            self.errors.append(f"client thread crashed:\n{traceback.format_exc()}")
        finally:
            if coordinator is not None:
                try:
                    coordinator.close()
                except Exception as exc:  # the server may be down at this moment
                    self.errors.append(f"closing a coordinator failed: {exc!r}")

    def _step(self, coordinator: Coordinator, state: _SessionState, now: float) -> bool:
        if state.current is None:
            if now >= self.config.traffic_end:
                state.done = True
                return False
            index = len(state.records)
            cfg = self.config
            record = MessageRecord(
                session=state.name,
                index=index,
                message_id=f"{state.name}-m{index:04d}",
                text=message_text(cfg.seed, state.name, index, cfg.sh_fraction, cfg.sh_sleep),
                shell=False,
            )
            record.shell = record.text.startswith("!sh ")
            state.records.append(record)
            state.current = record
            return self._submit(coordinator, state, now)
        if state.handle is None:
            return now >= state.next_try and self._submit(coordinator, state, now)
        return self._poll(state, now)

    def _submit(self, coordinator: Coordinator, state: _SessionState, now: float) -> bool:
        record = state.current
        assert record is not None
        handle = submit_record(coordinator, record, now)
        if handle is True:
            self._finish(state)
            return True
        if handle is False:
            state.next_try = now + SUBMIT_BACKOFF
            return False
        state.handle = handle
        state.attempt_started = now
        return True

    def _poll(self, state: _SessionState, now: float) -> bool:
        record, handle = state.current, state.handle
        assert record is not None and handle is not None
        try:
            reply = handle.result(timeout=0)
        except TurnTimeout:
            if now - state.attempt_started >= self.config.attempt_timeout:
                record.attempt_timeouts += 1
                state.handle = None
                state.next_try = now
            return False
        except TurnFailed as exc:
            record.failures.append(str(exc))
            if TRANSIENT_FAILURE_RE.search(str(exc)):
                state.handle = None
                state.next_try = now + SUBMIT_BACKOFF
            else:
                record.gave_up = f"failed: {exc}"
                self._finish(state)
            return True
        except (NotReplicated, MessageLost) as exc:  # told: not acknowledged, resubmit same id
            record.failures.append(f"{type(exc).__name__}: {exc}")
            state.handle = None
            state.next_try = now + SUBMIT_BACKOFF
            return True
        except InvalidMessage as exc:
            record.failures.append(f"unreadable reply: {exc}")
            record.gave_up = f"unreadable reply: {exc}"
            self._finish(state)
            return True
        except Exception as exc:  # redis down while polling: poll again later
            record.poll_errors[type(exc).__name__] += 1
            return False
        record.replies.append(dict(reply.raw))
        record.answered_at = now
        self._finish(state)
        return True

    @staticmethod
    def _finish(state: _SessionState) -> None:
        state.current = None
        state.handle = None
