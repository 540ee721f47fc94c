"""A long session in a small context window: compression vs none vs naive truncation.

Run: ``.venv/bin/python benchmarks/bench_long_session.py [--turns 200] [--window 6000]``

One conversation of ``--turns`` turns through the official ``openai`` SDK
against the provider simulator, whose model refuses a prompt longer than
``--window`` tokens (400, as a real context window does). Three runs, each on
its own simulator (a cold cache):

1. **compression** (the product: ``AIAgent(compression=...)``, the same code a
   worker runs): past ``threshold`` x window the older turns are summarised by
   one model call and the session goes on with ``[summary] + last turns``;
2. **none**: the history grows until the provider refuses a turn; the cost is
   counted until then;
3. **truncation** (the naive baseline): before each turn the oldest turns are
   dropped until the prompt fits under the same threshold: it never fails,
   but the conversation after the system prompt changes every turn, so the
   provider's cache only ever reads the system prompt and tool schemas.

Prints the cost table (ratios against compression, measured in this run, with
absolute figures beside) and the cache-read share of the first turn after each
compression. Figures are for reading, never for gating CI.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import AIAgent  # noqa: E402
from agent.compression import CompressionSettings, prompt_tokens  # noqa: E402
from agent.messages import Message, user_message  # noqa: E402
from agent.providers.pricing import call_cost  # noqa: E402
from agent.simulator import ProviderSimulator  # noqa: E402
from agent.tools import FileToolStateStore, ToolEnvironment  # noqa: E402
from cluster.errors import ProviderBadRequest  # noqa: E402

MODEL = "sim-gpt"
TOPICS = ("trams", "tiles", "bakeries", "the castle", "ferries", "the oceanarium", "fado", "Belem")


def message(turn: int) -> str:
    """A deterministic user message of about 45 words."""
    topic = TOPICS[turn % len(TOPICS)]
    return (
        f"Turn {turn}: about {topic}, we would like a plan for the morning and the afternoon, "
        f"with times, prices for two adults and two kids, what to book ahead, and how to get "
        f"there from the hotel near Rossio by public transport; note decision {turn * 7 % 97}."
    )


@dataclass
class Run:
    """One strategy's figures."""

    name: str
    answered: int = 0
    failed_at: int | None = None
    prompt: int = 0
    cache_read: int = 0
    cost: float = 0.0
    costs: list[float] = field(default_factory=list)
    compressions: list[int] = field(default_factory=list)
    shares: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def record(self, usage: dict[str, int]) -> None:
        prompt = usage["input_tokens"] + usage["cache_read_tokens"] + usage["cache_write_tokens"]
        cost = call_cost(
            "openai",
            MODEL,
            input_tokens=usage["input_tokens"],
            cache_read_tokens=usage["cache_read_tokens"],
            cache_write_tokens=usage["cache_write_tokens"],
            output_tokens=usage["output_tokens"],
        )
        self.answered += 1
        self.prompt += prompt
        self.cache_read += usage["cache_read_tokens"]
        self.cost += cost
        self.costs.append(cost)
        self.shares.append(usage["cache_read_tokens"] / prompt if prompt else 0.0)


def new_agent(sim: ProviderSimulator, env: ToolEnvironment, **extra: Any) -> AIAgent:
    return AIAgent(
        model=MODEL,
        api_key="sk-bench-long-session",
        base_url=sim.openai_base_url,
        provider="openai",
        session_id="long",
        tool_env=env,
        skip_context_files=True,
        skip_memory=True,
        max_tokens=256,
        **extra,
    )


def run(
    name: str,
    turns: int,
    window: int,
    env: ToolEnvironment,
    drive: Callable[[AIAgent, int, Run], None],
    **agent_args: Any,
) -> Run:
    figures = Run(name)
    started = time.perf_counter()
    with ProviderSimulator(context_window=window) as sim:
        agent = new_agent(sim, env, **agent_args)
        for turn in range(turns):
            try:
                drive(agent, turn, figures)
            except ProviderBadRequest:
                figures.failed_at = turn + 1
                break
        agent.release_clients()
    figures.seconds = time.perf_counter() - started
    return figures


def compressed_turn(agent: AIAgent, turn: int, figures: Run) -> None:
    result = agent.run_conversation(message(turn))
    figures.record(result.usage.as_dict())
    if result.compressed:
        figures.compressions.append(turn + 1)


def plain_turn(agent: AIAgent, turn: int, figures: Run) -> None:
    figures.record(agent.run_conversation(message(turn)).usage.as_dict())


def truncating(trigger: int) -> Callable[[AIAgent, int, Run], None]:
    history: list[Message] = []
    ratio = [1.0]  # provider-counted / estimated tokens of the last call (the estimate's bias)

    def turn_of(agent: AIAgent, turn: int, figures: Run) -> None:
        frozen = agent.frozen_prompt()
        text = message(turn)

        def estimate() -> int:
            return prompt_tokens(
                frozen.system_prompt, frozen.tool_schemas, history, user_message(text)
            )

        while history and estimate() * ratio[0] > trigger:
            del history[:2]  # the oldest turn: its user message and the reply
        sent = estimate()
        result = agent.run_conversation(text, history=list(history))
        history.extend(result.new_messages)
        ratio[0] = max(1.0, result.usage.prompt_tokens / max(1, sent))
        figures.record(result.usage.as_dict())

    return turn_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--window", type=int, default=6000, help="context window, tokens")
    parser.add_argument("--threshold", type=float, default=0.75)
    parser.add_argument("--target-ratio", type=float, default=0.45)
    parser.add_argument("--protect-last-n", type=int, default=2)
    args = parser.parse_args()
    settings = CompressionSettings(
        context_length=args.window,
        threshold=args.threshold,
        target_ratio=args.target_ratio,
        protect_last_n=args.protect_last_n,
    )
    with tempfile.TemporaryDirectory() as tmp:
        env = ToolEnvironment(
            sandbox_root=Path(tmp) / "sb", state=FileToolStateStore(Path(tmp) / "st")
        )
        compressed = run(
            "compression", args.turns, args.window, env, compressed_turn, compression=settings
        )
        none = run("none", args.turns, args.window, env, plain_turn)
        truncated = run(
            "truncation", args.turns, args.window, env, truncating(settings.trigger_tokens)
        )
    report(args, compressed, none, truncated)


def report(args: argparse.Namespace, compressed: Run, none: Run, truncated: Run) -> None:
    print(
        f"{args.turns}-turn session, context window {args.window} tokens (simulator), "
        f"threshold {args.threshold}, target_ratio {args.target_ratio}, "
        f"protect_last_n {args.protect_last_n}; model {MODEL} at list prices"
    )
    print()
    print(
        "| strategy | turns answered | refused at turn | prompt tokens | cache-read share | "
        "cost USD | cost / compression | cost of the turns none answered | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    base = compressed.cost or 1e-12
    first = none.answered
    base_first = sum(compressed.costs[:first]) or 1e-12
    for figures in (compressed, none, truncated):
        share = figures.cache_read / figures.prompt if figures.prompt else 0.0
        same_turns = sum(figures.costs[:first])
        print(
            f"| {figures.name} | {figures.answered} | {figures.failed_at or '-'} | "
            f"{figures.prompt} | {share:.1%} | {figures.cost:.4f} | {figures.cost / base:.2f}x | "
            f"{same_turns:.4f} ({same_turns / base_first:.2f}x) | {figures.seconds:.1f} |"
        )
    print()
    after = [
        f"turn {turn}: {compressed.shares[turn]:.0%}"
        for turn in compressed.compressions
        if turn < len(compressed.shares)
    ]
    print(
        f"compressions at turns {compressed.compressions or 'none'}; cache-read share of the "
        f"first turn after each: {', '.join(after) or '-'}"
    )
    if len(truncated.shares) > first:
        late = truncated.shares[first:]
        print(
            f"truncation, turns {first + 1}-{truncated.answered}: mean cache-read share "
            f"{sum(late) / len(late):.0%} (only the system prompt and tool schemas hit)"
        )


if __name__ == "__main__":
    main()
