"""Random operation sequences against a reference model of the cache (hypothesis stateful).

The model is the DESIGN text made executable: an LRU list, a running set and
the rules for the cap, the idle sweep, staleness and soft/hard release. After
every step the cache must agree with it, and the invariants must hold:

* size <= cap unless every entry of the LRU excess window is mid-turn;
* no agent is ever released while its turn runs;
* every agent that left the cache was released exactly once, soft or hard as
  the model says, and no other agent was released;
* the cache's LRU order is the model's.

Releases run inline (``InlineReleaser``) so that each step is deterministic;
the threaded tests cover the background releaser.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from cluster.errors import SessionBusy
from tests.fakes import FakeAgent, FakeClock, InlineReleaser
from tests.support.cache import InspectableCache
from worker.cache import CheckoutHandle, init_for_turn

TTL = 100.0
sessions = st.sampled_from(["a", "b", "c", "d", "e", "f"])
signatures = st.sampled_from(["v1", "v2"])

Checkout = AbstractContextManager[CheckoutHandle[FakeAgent]]


@dataclass
class Model:
    agent: FakeAgent
    signature: str
    committed: int
    config_version: int = 0
    running: bool = False
    stale: str | None = None  # "soft" / "hard": released when the turn ends


class CacheMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.cap = 3
        self.cache: InspectableCache[FakeAgent] = InspectableCache(
            max_size=3, releaser=InlineReleaser()
        )
        self.order: list[str] = []
        self.model: dict[str, Model] = {}
        self.open: dict[str, tuple[Checkout, CheckoutHandle[FakeAgent]]] = {}
        self.agents: list[FakeAgent] = []
        self.expected: dict[int, str] = {}  # id(agent) -> "soft" | "hard"

    @initialize(cap=st.integers(min_value=1, max_value=4))
    def make_cache(self, cap: int) -> None:
        self.cap = cap
        self.cache = InspectableCache(
            max_size=cap, idle_ttl=TTL, clock=self.clock, releaser=InlineReleaser()
        )

    # -- the reference model -------------------------------------------------------------

    def new_agent(self, session: str, ts: float | None) -> FakeAgent:
        agent = FakeAgent(session, last_activity_ts=ts)
        self.agents.append(agent)
        return agent

    def release(self, session: str, mode: str) -> None:
        entry = self.model.pop(session)
        self.order.remove(session)
        assert id(entry.agent) not in self.expected
        self.expected[id(entry.agent)] = mode

    def let_go(self, session: str, mode: str) -> None:
        entry = self.model[session]
        if entry.running:
            entry.stale = "hard" if "hard" in (entry.stale, mode) else "soft"
        else:
            self.release(session, mode)

    def enforce_cap(self) -> None:
        for session in self.order[: max(0, len(self.order) - self.cap)]:
            if not self.model[session].running:
                self.release(session, "soft")

    def add(self, session: str, entry: Model) -> None:
        self.model[session] = entry
        self.order.append(session)

    # -- turns ---------------------------------------------------------------------------

    @rule(session=sessions, signature=signatures, committed=st.integers(0, 2))
    def begin_turn(self, session: str, signature: str, committed: int) -> None:
        cm = self.cache.checkout(
            session,
            signature=signature,
            committed_turns=committed,
            build=lambda: self.new_agent(session, None),
            wait=0,
        )
        if session in self.open:
            with pytest.raises(SessionBusy):
                cm.__enter__()
            return
        handle = cm.__enter__()
        init_for_turn(handle.agent, 0, clock=self.clock)
        handle.agent.in_turn = True
        self.open[session] = (cm, handle)
        entry = self.model.get(session)
        if entry is not None and (entry.signature, entry.committed) == (signature, committed):
            assert handle.hit and handle.agent is entry.agent
            self.order.remove(session)
            self.order.append(session)
            entry.running = True
            return
        assert not handle.hit
        if entry is not None:
            self.release(session, "soft")
        self.add(session, Model(handle.agent, signature, committed, running=True))
        self.enforce_cap()

    @precondition(lambda self: bool(self.open))
    @rule(data=st.data(), commit=st.booleans(), discard=st.sampled_from([None, False, True]))
    def end_turn(self, data: st.DataObject, commit: bool, discard: bool | None) -> None:
        session = data.draw(st.sampled_from(sorted(self.open)), label="session")
        cm, handle = self.open.pop(session)
        entry = self.model[session]
        handle.agent.in_turn = False
        if commit:
            entry.committed += 1
            handle.committed(entry.committed)
        if discard is not None:
            handle.discard(hard=discard)
            entry.stale = "hard" if discard or entry.stale == "hard" else "soft"
        cm.__exit__(None, None, None)
        entry.running = False
        if entry.stale is not None:
            self.release(session, entry.stale)
        else:
            self.enforce_cap()

    @precondition(lambda self: bool(self.open))
    @rule(data=st.data())
    def activity_during_turn(self, data: st.DataObject) -> None:
        session = data.draw(st.sampled_from(sorted(self.open)), label="session")
        self.open[session][1].agent.last_activity_ts = self.clock.now

    # -- direct manipulation -----------------------------------------------------------------

    @rule(session=sessions, signature=signatures, active=st.booleans(), version=st.integers(0, 2))
    def insert(self, session: str, signature: str, active: bool, version: int) -> None:
        agent = self.new_agent(session, self.clock.now if active else None)
        if session in self.open:
            with pytest.raises(SessionBusy):
                self.cache.insert(session, agent, signature=signature)
            return
        self.cache.insert(session, agent, signature=signature, config_version=version)
        if session in self.model:
            self.release(session, "soft")
        self.add(session, Model(agent, signature, 0, config_version=version))
        self.enforce_cap()

    @rule(session=sessions, hard=st.booleans())
    def evict_or_end_session(self, session: str, hard: bool) -> None:
        found = self.cache.close_session(session) if hard else self.cache.evict(session)
        assert found == (session in self.model)
        if found:
            self.let_go(session, "hard" if hard else "soft")

    @rule()
    def sweep(self) -> None:
        expired = [
            s
            for s in self.order
            if not self.model[s].running
            and self.model[s].agent.last_activity_ts is not None
            and self.clock.now - self.model[s].agent.last_activity_ts > TTL  # type: ignore[operator]
        ]
        assert self.cache.sweep_idle() == len(expired)
        for session in expired:
            self.release(session, "soft")

    @rule(seconds=st.sampled_from([0.0, 1.0, TTL / 2, TTL, TTL + 1, 3 * TTL]))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def clear(self) -> None:
        assert self.cache.clear() == len(self.order)
        for session in list(self.order):
            self.let_go(session, "soft")

    @rule(version=st.integers(0, 2))
    def config_bust(self, version: int) -> None:
        result = self.cache.invalidate(lambda info: info.config_version < version)
        matching = [s for s in self.order if self.model[s].config_version < version]
        assert sorted((*result.released, *result.marked_stale)) == sorted(matching)
        for session in matching:
            self.let_go(session, "soft")

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def lru_order_and_running_set_match_the_model(self) -> None:
        assert self.cache.keys() == self.order
        assert self.cache.running_sessions() == set(self.open)

    @invariant()
    def over_the_cap_only_because_of_mid_turn_entries(self) -> None:
        excess = self.order[: max(0, len(self.order) - self.cap)]
        assert all(self.model[s].running for s in excess)

    @invariant()
    def every_agent_released_exactly_as_the_model_says(self) -> None:
        for agent in self.agents:
            assert not agent.released_in_turn
            mode = self.expected.get(id(agent))
            expected = {None: (0, 0), "soft": (1, 0), "hard": (0, 1)}[mode]
            assert (agent.soft_releases, agent.hard_closes) == expected, (agent, mode)

    def teardown(self) -> None:
        for cm, handle in self.open.values():
            handle.agent.in_turn = False
            cm.__exit__(None, None, None)
        self.cache.shutdown()


CacheMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestCacheModel = CacheMachine.TestCase
