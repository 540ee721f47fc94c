"""What an agent cache saves: building an agent per message versus reusing one.

Run: ``.venv/bin/python benchmarks/bench_agent.py [--turns N]``

Prints two tables, both measured in this process against the same baseline:
1. wall time of building an agent (SDK client, tool registry, system prompt)
   versus reusing a cached one (set per-turn state, init the turn);
2. a whole turn through the official SDK against the provider simulator, with
   a fresh agent per turn whose prompt drifts (memory note in the prompt, as a
   gateway without a frozen prefix would) versus one cached agent, including
   the simulator's priced cost.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agent import AIAgent
from agent.simulator import ProviderSimulator
from agent.tools import FileToolStateStore, ToolEnvironment

BRIEF = " ".join(f"Rule {i}: be brief and cite commands." for i in range(150))


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def row(name: str, samples: list[float], baseline: float) -> str:
    med = statistics.median(samples)
    p99 = sorted(samples)[max(0, int(len(samples) * 0.99) - 1)]
    return f"| {name:<34} | {med * 1e6:>10.1f} | {p99 * 1e6:>10.1f} | {med / baseline:>8.1f}x |"


def bench_construction(env: ToolEnvironment, sim: ProviderSimulator, repeat: int) -> None:
    def build() -> AIAgent:
        agent = AIAgent(
            model="sim-gpt",
            api_key="sk-bench",
            base_url=sim.openai_base_url,
            provider="openai",
            session_id="bench",
            tool_env=env,
            ephemeral_system_prompt=BRIEF,
            skip_context_files=True,
        )
        agent.frozen_prompt()
        return agent

    cached = build()

    def reuse() -> None:
        cached.stream_delta_callback = None
        cached.reasoning_config = None
        cached.init_turn(0)
        cached.frozen_prompt()

    built = []
    build_samples = timed(lambda: built.append(build()), repeat)
    reuse_samples = timed(reuse, repeat * 20)
    for agent in built:
        agent.release_clients()
    cached.release_clients()
    base = statistics.median(reuse_samples)
    print("\nAgent construction vs reuse (microseconds)")
    print("| what                               |     median |        p99 |    ratio |")
    print("|------------------------------------|------------|------------|----------|")
    print(row("reuse a cached agent (baseline)", reuse_samples, base))
    print(row("build a new agent + freeze prompt", build_samples, base))


def bench_turns(env: ToolEnvironment, sim: ProviderSimulator, turns: int) -> None:
    def agent_for(session: str, brief: str) -> AIAgent:
        return AIAgent(
            model="sim-gpt",
            api_key="sk-bench",
            base_url=sim.openai_base_url,
            provider="openai",
            session_id=session,
            tool_env=env,
            ephemeral_system_prompt=brief,
            skip_context_files=True,
        )

    sim.reset_stats()
    cached = agent_for("cached", BRIEF)
    cached_samples = timed(lambda: cached.run_conversation("hello"), turns)
    cached.release_clients()
    cached_cost = sim.stats()["total"]

    sim.reset_stats()
    history: list[dict[str, object]] = []
    fresh_samples = []
    for turn in range(turns):
        start = time.perf_counter()
        # Without a frozen prefix, anything dynamic in the prompt (a clock, a memory
        # note) changes the bytes and the provider cache misses.
        agent = agent_for(f"fresh-{turn}", f"Turn {turn} at {time.time()}.\n{BRIEF}")
        result = agent.run_conversation("hello", history=history)
        history.extend(result.new_messages)
        agent.release_clients()
        fresh_samples.append(time.perf_counter() - start)
    fresh_cost = sim.stats()["total"]

    base = statistics.median(cached_samples)
    print(f"\nA turn through the openai SDK against the simulator, {turns} turns (microseconds)")
    print("| what                               |     median |        p99 |    ratio |")
    print("|------------------------------------|------------|------------|----------|")
    print(row("cached agent (baseline)", cached_samples, base))
    print(row("fresh agent per turn", fresh_samples, base))
    print("\nSimulated provider cost of those turns")
    print(
        "| what                    | cache-read tokens | uncached input | cost (USD) | cache-hit "
        "share |"
    )
    print(
        "|-------------------------|-------------------|----------------|------------|-----------------|"
    )
    for name, stats in (("cached agent", cached_cost), ("fresh agent per turn", fresh_cost)):
        print(
            f"| {name:<23} | {stats['cache_read_tokens']:>17} | {stats['input_tokens']:>14} | "
            f"{stats['cost_usd']:>10.4f} | {stats['cache_hit_share']:>15.1%} |"
        )
    if cached_cost["cost_usd"]:
        print(f"\nfresh/cached cost ratio: {fresh_cost['cost_usd'] / cached_cost['cost_usd']:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--turns", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ProviderSimulator() as sim:
        env = ToolEnvironment(
            sandbox_root=Path(tmp) / "sb", state=FileToolStateStore(Path(tmp) / "st")
        )
        bench_construction(env, sim, args.repeat)
        bench_turns(env, sim, args.turns)


if __name__ == "__main__":
    main()
