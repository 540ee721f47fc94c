"""Bursts of the chaos traffic: a second/third message sent while a session's turn runs.

A seeded share of sessions (``burst_fraction``) sends each of its messages as
a burst: a leader that runs a shell command (``!sh sleep S; echo ...``, so its
turn is still running) and, right after it was accepted, one or two followers
sent with strategy ``steer`` or ``collect`` (seeded per burst). Each follower
is submitted once the message before it was accepted (so the session's order
is the submit order); the session's next message waits until the leader and
its followers were all answered. A follower follows the same retry contract as
any message (:mod:`tests.integration.chaos.traffic`): a submission that
raised is retried, an accepted one without a reply after ``attempt_timeout``
or cut off is resubmitted under the same id, with the same strategy.

A follower may be folded into a running turn (its reply has ``folded_into``,
the turn's reply ``folded``), or run as a turn of its own when the turn ended
first: either way :mod:`tests.integration.chaos.checks` checks that each
caller got exactly one reply and the history holds every message once, in order.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from cluster.errors import InvalidMessage, MessageLost, NotReplicated, TurnFailed, TurnTimeout
from cluster.settings import ClusterSettings
from coordinator.ingress import Coordinator, TurnHandle
from tests.integration.chaos.traffic import (
    SUBMIT_BACKOFF,
    TRANSIENT_FAILURE_RE,
    MessageRecord,
    Traffic,
    TrafficConfig,
    _SessionState,
    submit_record,
)

STRATEGIES = ("steer", "collect")


@dataclass(frozen=True)
class BurstPlan:
    """One burst: the followers' strategy and how many follow the leader (1 or 2)."""

    strategy: str
    followers: int


def bursty(seed: int, session: str, fraction: float) -> bool:
    """Whether ``session`` sends its messages as bursts (a pure function of the seed)."""
    return random.Random(f"{seed}/{session}/bursty").random() < fraction


def plan_burst(seed: int, session: str, index: int) -> BurstPlan:
    """The burst that begins with the session's message ``index`` (a pure function of the seed)."""
    rng = random.Random(f"{seed}/{session}/{index}/burst")
    return BurstPlan(strategy=rng.choice(STRATEGIES), followers=rng.choice((1, 2)))


@dataclass
class Follower:
    """A message of a burst sent after its leader, with ``strategy``."""

    record: MessageRecord
    strategy: str
    handle: TurnHandle | None = None
    attempt_started: float = 0.0
    next_try: float = 0.0
    done: bool = False


class BurstTraffic(Traffic):
    """:class:`Traffic` whose bursty sessions send bursts (the others are unchanged)."""

    def __init__(
        self,
        config: TrafficConfig,
        settings: ClusterSettings,
        clock: Callable[[], float],
        *,
        burst_fraction: float,
    ) -> None:
        super().__init__(config, settings, clock)
        self._bursty = {
            s.name for s in self.sessions if bursty(config.seed, s.name, burst_fraction)
        }
        # One entry per session from the start: client threads only touch their own.
        self._followers: dict[str, list[Follower]] = {s.name: [] for s in self.sessions}

    def bursty_sessions(self) -> int:
        """How many sessions send bursts."""
        return len(self._bursty)

    def _step(self, coordinator: Coordinator, state: _SessionState, now: float) -> bool:
        followers = self._followers[state.name]
        progressed = False
        if followers:
            progressed = self._step_followers(coordinator, state, followers, now)
            if state.current is None:
                if not all(f.done for f in followers):
                    return progressed
                followers.clear()
        if state.current is None and state.name in self._bursty:
            if now >= self.config.traffic_end:
                state.done = True
                return progressed
            self._begin_burst(state)
            return self._submit(coordinator, state, now) or progressed
        return super()._step(coordinator, state, now) or progressed

    def _begin_burst(self, state: _SessionState) -> None:
        index = len(state.records)
        plan = plan_burst(self.config.seed, state.name, index)
        tag = f"{state.name} msg {index}"
        leader = MessageRecord(
            session=state.name,
            index=index,
            message_id=f"{state.name}-m{index:04d}",
            text=f"!sh sleep {self.config.sh_sleep:g}; echo {tag}",
            shell=True,
        )
        state.records.append(leader)
        state.current = leader
        for n in range(index + 1, index + 1 + plan.followers):
            record = MessageRecord(
                session=state.name,
                index=n,
                message_id=f"{state.name}-m{n:04d}",
                text=f"{state.name} msg {n}",
                shell=False,
            )
            state.records.append(record)
            self._followers[state.name].append(Follower(record, plan.strategy))

    def _step_followers(
        self,
        coordinator: Coordinator,
        state: _SessionState,
        followers: list[Follower],
        now: float,
    ) -> bool:
        """Submit each follower once the message before it was accepted; poll the others."""
        leader = state.records[followers[0].record.index - 1]
        before_accepted = leader.accepted or leader.gave_up is not None
        progressed = False
        for follower in followers:
            if follower.done:
                continue
            if follower.handle is None:
                if not before_accepted and not follower.record.accepted:
                    break
                if now >= follower.next_try:
                    progressed |= self._submit_follower(coordinator, follower, now)
            else:
                progressed |= self._poll_follower(follower, now)
            before_accepted = follower.record.accepted or follower.done
        return progressed

    def _submit_follower(self, coordinator: Coordinator, follower: Follower, now: float) -> bool:
        record = follower.record
        handle = submit_record(coordinator, record, now, strategy=follower.strategy)
        if handle is True:
            follower.done = True
            return True
        if handle is False:
            follower.next_try = now + SUBMIT_BACKOFF
            return False
        follower.handle = handle
        follower.attempt_started = now
        return True

    def _poll_follower(self, follower: Follower, now: float) -> bool:
        record, handle = follower.record, follower.handle
        assert handle is not None
        try:
            reply = handle.result(timeout=0)
        except TurnTimeout:
            if now - follower.attempt_started >= self.config.attempt_timeout:
                record.attempt_timeouts += 1
                follower.handle = None
                follower.next_try = now
            return False
        except TurnFailed as exc:
            record.failures.append(str(exc))
            follower.handle = None
            if TRANSIENT_FAILURE_RE.search(str(exc)):
                follower.next_try = now + SUBMIT_BACKOFF
            else:
                record.gave_up = f"failed: {exc}"
                follower.done = True
            return True
        except (NotReplicated, MessageLost) as exc:  # told: not acknowledged, resubmit same id
            record.failures.append(f"{type(exc).__name__}: {exc}")
            follower.handle = None
            follower.next_try = now + SUBMIT_BACKOFF
            return True
        except InvalidMessage as exc:
            record.failures.append(f"unreadable reply: {exc}")
            record.gave_up = f"unreadable reply: {exc}"
            follower.handle, follower.done = None, True
            return True
        except Exception as exc:  # redis down while polling: poll again later
            record.poll_errors[type(exc).__name__] += 1
            return False
        record.replies.append(dict(reply.raw))
        record.answered_at = now
        follower.handle, follower.done = None, True
        return True
