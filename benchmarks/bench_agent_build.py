"""What an agent costs to build and to keep, with one SDK client per agent or one shared.

Run: ``.venv/bin/python benchmarks/bench_agent_build.py [--agents 300] [--sessions 2000]``

Against the provider simulator, in this process:

1. building an agent (openai provider): wall time and memory (tracemalloc) per
   agent, against the baseline of the same agent plus its own
   ``openai.OpenAI()`` client (what every agent built before clients were
   shared) and against an offline agent (no SDK client at all);
2. a worker's agent cache at cap 128 over ``--sessions`` new sessions, each
   running one turn, with the cycle collector off: live ``AIAgent`` objects
   and all tracked objects after each quarter, so growth past the cap
   shows up as rising counts (it must not rely on ``gc.collect()``).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openai  # noqa: E402

from agent import AIAgent  # noqa: E402
from agent.simulator import ProviderSimulator  # noqa: E402
from agent.tools import FileToolStateStore, ToolEnvironment  # noqa: E402
from worker.cache import AgentCache  # noqa: E402

KEY = "sk-bench-build-0123456789"


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def build_cost(make: Callable[[int], Any], count: int) -> tuple[float, float, float]:
    """(median ms, Python KiB, RSS KiB) per object of ``make(i)``, ``count`` objects held."""
    gc.collect()
    rss_before = rss_kib()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    samples, held = [], []
    for i in range(count):
        started = time.perf_counter()
        held.append(make(i))
        samples.append(time.perf_counter() - started)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    size = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    rss = (rss_kib() - rss_before) / count
    for item in held:
        for closing in item if isinstance(item, tuple) else (item,):
            getattr(closing, "release_clients", getattr(closing, "close", lambda: None))()
    return 1000 * statistics.median(samples), size / count / 1024, rss


def cache_plateau(
    sim: ProviderSimulator, env: ToolEnvironment, sessions: int
) -> list[tuple[int, int, int]]:
    """(sessions so far, live AIAgents, tracked objects) after each quarter, gc off."""
    cache: AgentCache[AIAgent] = AgentCache(max_size=128, idle_ttl=3600, sweep_interval=3600)
    rows = []
    gc.collect()
    gc.disable()
    try:
        for i in range(sessions):
            session = f"s{i}"

            def build(session: str = session) -> AIAgent:
                return AIAgent(
                    model="sim-gpt", api_key=KEY, base_url=sim.openai_base_url,
                    provider="openai", session_id=session, tool_env=env, skip_context_files=True,
                )  # fmt: skip

            with cache.checkout(session, signature="sig", committed_turns=0, build=build) as handle:
                handle.agent.run_conversation(f"hello from {session}")
                handle.committed(1)
            if (i + 1) % (sessions // 4) == 0:
                agents = sum(
                    1 for o in gc.get_objects() if type(o) is AIAgent
                )  # no lazy-proxy imports
                rows.append((i + 1, agents, len(gc.get_objects())))
    finally:
        gc.enable()
        cache.clear()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=300)
    parser.add_argument("--sessions", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ProviderSimulator() as sim:
        env = ToolEnvironment(
            sandbox_root=Path(tmp) / "sandboxes", state=FileToolStateStore(Path(tmp) / "state")
        )

        def shared(i: int) -> AIAgent:
            return AIAgent(
                model="sim-gpt", api_key=KEY, base_url=sim.openai_base_url, provider="openai",
                session_id=f"b{i}", tool_env=env, skip_context_files=True,
            )  # fmt: skip

        def own_client(i: int) -> tuple[AIAgent, openai.OpenAI]:
            client = openai.OpenAI(api_key=KEY, base_url=sim.openai_base_url, max_retries=0)
            return shared(i), client

        def offline(i: int) -> AIAgent:
            return AIAgent(session_id=f"o{i}", tool_env=env, skip_context_files=True)

        shared(-1).release_clients()  # the process's first client: built once, not per agent
        rows = [
            ("agent + its own openai.OpenAI() (before)", *build_cost(own_client, args.agents)),
            ("agent on the shared client (now)", *build_cost(shared, args.agents)),
            ("offline agent (no SDK client)", *build_cost(offline, args.agents)),
        ]
        base_ms, base_rss = rows[0][1], rows[0][3]
        print(
            f"Building an agent ({args.agents} agents each, median time, memory held per agent):\n"
        )
        print("| build | ms | vs own client | Python KiB | RSS KiB | vs own client |")
        print("|---|---|---|---|---|---|")
        for name, ms, kib, rss in rows:
            print(
                f"| {name} | {ms:.3f} | {ms / base_ms:.3f}x | {kib:.1f} | {rss:.1f} | "
                f"{rss / base_rss:.3f}x |"
            )
        print(
            f"\nAgent cache at cap 128, {args.sessions} new sessions of one turn, cycle collector "
            "off:\n"
        )
        print("| sessions | live AIAgent objects | tracked objects |")
        print("|---|---|---|")
        for count, agents, objects in cache_plateau(sim, env, args.sessions):
            print(f"| {count} | {agents} | {objects} |")


if __name__ == "__main__":
    main()
