"""A worker's agent cache stays at its cap without the cycle collector (real SDK agents).

Agents share their SDK client and hold no reference cycles, so an evicted
agent is freed the moment the cache lets go of it: with ``gc`` disabled, the
number of live agents and of tracked objects stays flat over 2,000 sessions.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import AIAgent
from agent.simulator import ProviderSimulator
from agent.tools import FileToolStateStore, ToolEnvironment
from worker.cache import AgentCache

pytestmark = pytest.mark.integration

CAP = 128


@pytest.fixture
def sim() -> Iterator[ProviderSimulator]:
    with ProviderSimulator() as simulator:
        yield simulator


def live_agents(objects: list[object]) -> int:
    # type(), not isinstance(): isinstance() asks the SDKs' lazy module proxies
    # for their __class__, which imports modules (thousands of new objects).
    return sum(type(o) is AIAgent for o in objects)


def test_memory_plateaus_at_the_cap_over_2000_sessions_without_the_cycle_collector(
    sim: ProviderSimulator, tmp_path: Path
) -> None:
    env = ToolEnvironment(
        sandbox_root=tmp_path / "sandboxes", state=FileToolStateStore(tmp_path / "state")
    )
    cache: AgentCache[AIAgent] = AgentCache(max_size=CAP, idle_ttl=3600, sweep_interval=3600)
    counts: dict[int, tuple[int, int]] = {}
    gc.collect()
    gc.disable()
    try:
        for i in range(2000):
            session = f"s{i}"

            def build(session: str = session) -> AIAgent:
                return AIAgent(
                    model="sim-gpt",
                    api_key="sk-test-memory-0123456789",
                    base_url=sim.openai_base_url,
                    provider="openai",
                    session_id=session,
                    tool_env=env,
                    skip_context_files=True,
                )

            with cache.checkout(session, signature="sig", committed_turns=0, build=build) as handle:
                assert "hello" in handle.agent.run_conversation(f"hello from {session}").text
                handle.committed(1)
            del handle
            if i + 1 in (1000, 2000):
                objects = gc.get_objects()
                counts[i + 1] = (live_agents(objects), len(objects))
                del objects
    finally:
        gc.enable()
        cache.clear()
    # The cap, plus evicted agents still on their way through the background releaser.
    assert all(agents <= CAP + 4 for agents, _ in counts.values()), counts
    growth = counts[2000][1] - counts[1000][1]
    assert growth < 500, f"{growth} more tracked objects after 1,000 more sessions: {counts}"
