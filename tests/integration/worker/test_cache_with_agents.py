"""The agent cache with real agents: cap, concurrency, resumption, soft vs hard, slow release.

Real :class:`AIAgent` instances (offline provider) over a file-backed
:class:`ToolEnvironment` in ``tmp_path``; background processes are real
``sleep`` processes started through the agent's ``process`` tool.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent import AIAgent
from agent.tools import FileToolStateStore, ToolEnvironment
from tests.support.cache import InspectableCache
from worker.cache import AgentCache, config_signature

pytestmark = pytest.mark.integration

SIGNATURE = config_signature(
    "offline-echo",
    {"api_key": None, "base_url": None, "provider": "offline", "api_mode": None},
    None,
    None,
)
SLOW_RELEASE_SECONDS = 2.0


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def tool_output(agent: AIAgent, command: str) -> str:
    """Run a ``!tool ...`` turn and return the tool message's content."""
    result = agent.run_conversation(command)
    tool_messages = [m for m in result.new_messages if m.get("role") == "tool"]
    assert tool_messages, result.new_messages
    return str(tool_messages[0]["content"])


class SlowReleaseAgent(AIAgent):
    """An agent whose soft release takes :data:`SLOW_RELEASE_SECONDS`."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.release_started = threading.Event()
        self.release_finished = threading.Event()
        self.release_seconds: float | None = None
        self._never_set = threading.Event()

    def release_clients(self) -> None:
        started = time.monotonic()
        self.release_started.set()
        self._never_set.wait(SLOW_RELEASE_SECONDS)  # a slow HTTP client close
        super().release_clients()
        self.release_seconds = time.monotonic() - started
        self.release_finished.set()


class Harness:
    """A cache of real agents over one tool environment, plus per-session turn counts."""

    def __init__(self, tmp_path: Path) -> None:
        self.env = ToolEnvironment(
            sandbox_root=tmp_path / "sandboxes", state=FileToolStateStore(tmp_path / "state")
        )
        self.caches: list[InspectableCache[AIAgent]] = []
        self.agents: list[AIAgent] = []
        self.turns: dict[str, int] = {}

    def cache(self, max_size: int) -> InspectableCache[AIAgent]:
        cache: InspectableCache[AIAgent] = InspectableCache(max_size=max_size)
        self.caches.append(cache)
        return cache

    def builder(self, session_id: str, cls: type[AIAgent] = AIAgent) -> Callable[[], AIAgent]:
        def build() -> AIAgent:
            agent = cls(session_id=session_id, tool_env=self.env, skip_context_files=True)
            self.agents.append(agent)
            return agent

        return build

    def turn(
        self, cache: AgentCache[AIAgent], session_id: str, text: str, cls: type[AIAgent] = AIAgent
    ) -> tuple[AIAgent, bool, str]:
        """One checkout + turn + commit; returns (agent, hit, final text)."""
        committed = self.turns.get(session_id, 0)
        with cache.checkout(
            session_id,
            signature=SIGNATURE,
            committed_turns=committed,
            build=self.builder(session_id, cls),
            turn_state={"max_iterations": 5},
        ) as handle:
            result = handle.agent.run_conversation(text)
            self.turns[session_id] = committed + 1
            handle.committed(committed + 1)
            return handle.agent, handle.hit, result.text

    def close(self) -> None:
        for cache in self.caches:
            assert cache.shutdown(hard=True, timeout=15), "releases still running at shutdown"
        for agent in self.agents:  # evicted (soft-released) agents still own tool state
            agent.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        h.close()


def test_fill_to_cap_then_spill_over_soft_releases_the_least_recently_used(
    harness: Harness,
) -> None:
    cache = harness.cache(max_size=4)
    sessions = [f"s{i}" for i in range(6)]
    agents: dict[str, AIAgent] = {}
    for sid in sessions:
        agent, hit, text = harness.turn(cache, sid, f"hello from {sid}")
        assert not hit
        assert text == f"echo: hello from {sid}"
        agents[sid] = agent

    assert cache.wait_for_releases(timeout=10)
    assert len(cache) == 4
    assert cache.keys() == sessions[2:], "LRU order, the two oldest gone"
    for sid in sessions[:2]:
        assert sid not in cache
        assert agents[sid].client is None, f"{sid} was evicted but not soft-released"
        assert agents[sid].transcript == [], "soft release drops the transcript"
    for sid in sessions[2:]:
        assert cache.peek(sid) is agents[sid]
        assert agents[sid].client is not None, f"cached {sid} lost its client"
        assert len(agents[sid].transcript) == 2
    metrics = cache.metrics()
    assert metrics["evictions"].get("cap") == 2
    assert metrics["soft_releases"] == 2
    assert metrics.get("hard_releases", 0) == 0
    assert metrics["misses"] == 6


def test_all_sessions_mid_turn_stay_usable_over_the_cap(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="worker.cache")
    cache = harness.cache(max_size=2)
    sessions = [f"busy-{i}" for i in range(4)]
    all_held = threading.Barrier(len(sessions) + 1, timeout=15)
    all_turned = threading.Barrier(len(sessions) + 1, timeout=15)
    may_end = threading.Event()
    agents: dict[str, AIAgent] = {}
    texts: dict[str, str] = {}
    clients_mid_turn: dict[str, bool] = {}
    errors: list[BaseException] = []

    def worker(sid: str) -> None:
        try:
            with cache.checkout(
                sid, signature=SIGNATURE, committed_turns=0, build=harness.builder(sid)
            ) as handle:
                agents[sid] = handle.agent
                all_held.wait()  # every session holds its checkout now
                texts[sid] = handle.agent.run_conversation(f"ping {sid}").text
                clients_mid_turn[sid] = handle.agent.client is not None
                handle.committed(1)
                all_turned.wait()  # turns done, every checkout still held
                assert may_end.wait(timeout=15), "main thread never let the turns end"
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
            all_held.abort()
            all_turned.abort()

    threads = [threading.Thread(target=worker, args=(sid,), daemon=True) for sid in sessions]
    for thread in threads:
        thread.start()
    checks_passed = False
    try:
        all_held.wait()
        assert cache.running_sessions() == frozenset(sessions)
        assert len(cache) == 4, "mid-turn agents are never evicted: the cache stays over its cap"
        assert all(agents[sid].client is not None for sid in sessions)
        all_turned.wait()
        assert len(cache) == 4
        assert all(agents[sid].client is not None for sid in sessions)
        checks_passed = True
    finally:
        may_end.set()
        if not checks_passed:  # free the workers still waiting at a barrier
            all_held.abort()
            all_turned.abort()
        for thread in threads:
            thread.join(timeout=15)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)

    assert texts == {sid: f"echo: ping {sid}" for sid in sessions}
    assert clients_mid_turn == dict.fromkeys(sessions, True)
    assert any("mid-turn" in record.getMessage() for record in caplog.records), (
        "going over the cap because of mid-turn agents is logged"
    )
    assert cache.wait_for_releases(timeout=10)
    assert len(cache) == 2, "once the turns end the cache shrinks to its cap"
    cached = set(cache.keys())
    for sid in sessions:
        if sid in cached:
            assert agents[sid].client is not None
        else:
            assert agents[sid].client is None
    assert cache.metrics()["evictions"].get("cap") == 2


def test_evicted_session_gets_a_fresh_agent_that_finds_its_tool_state(harness: Harness) -> None:
    cache = harness.cache(max_size=1)
    first, hit, _ = harness.turn(
        cache, "resumed", '!tool todo {"action": "add", "text": "water the plants"}'
    )
    assert not hit
    harness.turn(cache, "resumed", '!tool memory {"action": "add", "text": "likes green tea"}')
    harness.turn(cache, "other", "hi")  # evicts "resumed" by the cap
    assert cache.wait_for_releases(timeout=10)
    assert "resumed" not in cache
    assert first.client is None

    turns_before = harness.turns["resumed"]
    with cache.checkout(
        "resumed",
        signature=SIGNATURE,
        committed_turns=turns_before,
        build=harness.builder("resumed"),
    ) as handle:
        second = handle.agent
        assert handle.hit is False
        assert second is not first
        assert second.client is not None
        assert second.run_conversation("are you there?").text == "echo: are you there?"
        todos = tool_output(second, '!tool todo {"action": "list"}')
        assert "water the plants" in todos and "[pending]" in todos
        notes = tool_output(second, '!tool memory {"action": "list"}')
        assert "#1 likes green tea" in notes
        assert "likes green tea" in second.frozen_prompt().system_prompt
        handle.committed(turns_before + 3)


def test_soft_eviction_keeps_background_process_and_session_end_kills_it(
    harness: Harness,
) -> None:
    cache = harness.cache(max_size=1)
    sid = "with-process"
    committed = 0
    with cache.checkout(
        sid, signature=SIGNATURE, committed_turns=committed, build=harness.builder(sid)
    ) as handle:
        first = handle.agent
        started = tool_output(first, '!tool process {"action": "start", "command": "sleep 120"}')
        match = re.search(r"pid (\d+)", started)
        assert match, started
        pid = int(match.group(1))
        committed += 1
        handle.committed(committed)
    assert alive(pid)

    harness.turn(cache, "neighbour", "hi")  # evicts sid by the cap: a SOFT release
    assert cache.wait_for_releases(timeout=10)
    assert sid not in cache
    assert first.client is None
    assert alive(pid), "soft eviction must not kill the session's background process"

    with cache.checkout(
        sid, signature=SIGNATURE, committed_turns=committed, build=harness.builder(sid)
    ) as handle:
        assert handle.hit is False and handle.agent is not first
        listing = tool_output(handle.agent, '!tool process {"action": "list"}')
        assert f"pid {pid}" in listing and "running" in listing, listing
        committed += 1
        handle.committed(committed)
    assert alive(pid)

    assert cache.close_session(sid) is True  # session end: HARD
    assert cache.wait_for_releases(timeout=10)
    assert wait_for(lambda: not alive(pid), timeout=10), "hard close kills the process"
    assert sid not in cache
    assert cache.metrics()["hard_releases"] == 1


def test_slow_release_does_not_delay_other_sessions(harness: Harness) -> None:
    cache = harness.cache(max_size=4)
    slow, _, _ = harness.turn(cache, "slow", "hi", cls=SlowReleaseAgent)
    assert isinstance(slow, SlowReleaseAgent)
    harness.turn(cache, "warm", "hi")  # cached: its next checkout is a hit

    t0 = time.monotonic()
    assert cache.evict("slow") is True
    evict_seconds = time.monotonic() - t0
    assert slow.release_started.wait(timeout=5), "the release never started"

    t1 = time.monotonic()
    _, hit_new, text_new = harness.turn(cache, "fresh", "while slow releases")
    fresh_seconds = time.monotonic() - t1
    t2 = time.monotonic()
    _, hit_warm, text_warm = harness.turn(cache, "warm", "again")
    warm_seconds = time.monotonic() - t2
    t3 = time.monotonic()
    size, metrics = len(cache), cache.metrics()
    introspection_seconds = time.monotonic() - t3
    still_releasing = not slow.release_finished.is_set()

    t4 = time.monotonic()
    assert cache.wait_for_releases(timeout=SLOW_RELEASE_SECONDS + 10)
    waited_seconds = time.monotonic() - t4
    print(
        f"\nslow release: evict() {evict_seconds * 1000:.1f} ms; "
        f"miss checkout+turn {fresh_seconds * 1000:.1f} ms; "
        f"hit checkout+turn {warm_seconds * 1000:.1f} ms; "
        f"len+metrics {introspection_seconds * 1000:.1f} ms; "
        f"release_clients took {slow.release_seconds:.2f} s "
        f"(waited {waited_seconds:.2f} s more after the other operations)"
    )

    assert still_releasing, "the other operations finished before the slow release did"
    assert (hit_new, text_new) == (False, "echo: while slow releases")
    assert (hit_warm, text_warm) == (True, "echo: again")
    assert size == 2 and metrics["size"] == 2
    assert evict_seconds < 0.5
    assert fresh_seconds < 0.5
    assert warm_seconds < 0.5
    assert introspection_seconds < 0.5
    assert slow.release_seconds is not None
    assert slow.release_seconds >= SLOW_RELEASE_SECONDS * 0.95
    assert slow.client is None
