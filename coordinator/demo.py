"""``agent-cluster demo``: what the cluster is for, in a few seconds, on nothing but Python.

An embedded cluster (a coordinator and three workers on one in-process
fakeredis) talks to the provider simulator (a local HTTP server speaking the
OpenAI wire format, with prompt caching and pricing) through the real
``openai`` provider. The story, one line per step and the figures in tables:

1. a config push points every worker at the simulator;
2. turn 1: sessions spread over the workers; each owner builds the agent;
3. turn 2: the same worker reuses the cached agent, the history rides along,
   and the provider reads the earlier prefix from its prompt cache;
4. a cache-busting config push: every worker releases its agents;
5. turn 3: agents rebuilt everywhere, the frozen prompt keeps the cache warm;
6. the busiest worker is drained: it finishes, releases and leaves;
7. turn 4: its sessions run on their new owners with their history (and
   their workspace: the file written in turn 2 is read back);
8. a push gives the model a small context window with compression on, and
   one session talks on past it: its older turns are summarised, and the
   turn after the compression still reads its prompt from the cache.

Nothing is written outside a temporary directory, removed at the end.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.providers.pricing import call_cost
from agent.simulator import ProviderSimulator
from cluster.endpoints import Endpoint
from cluster.settings import ClusterSettings
from coordinator.embedded import EmbeddedCluster
from coordinator.ingress import Reply
from coordinator.status import ClusterStatus
from coordinator.status_view import render_status, table

__all__ = ["DEMO_MESSAGES", "TurnFigures", "run_demo"]

MODEL = "sim-gpt"
DEMO_MESSAGES = (
    "Hi! We are planning three days in Lisbon in May with two kids who love trams, "
    "azulejo tiles and pastries. Keep track of what we decide, day by day, please.",
    "!sh echo 'day 1: tram 28 up to the castle, then the tile museum' > plan.txt && cat plan.txt",
    "Day 2 is Belem: the tower, the monastery and the custard tarts at the old bakery; "
    "day 3 the oceanarium and a ferry across the river at sunset.",
    "!sh cat plan.txt",
)
STEPS = (
    "turn 1: each session is placed on a worker by consistent hashing; that worker builds "
    "its agent (the system prompt and tool schemas, shared by all sessions, are cached by "
    "the provider after the very first call)",
    "turn 2: same worker, same cached agent object; the history rides along and the "
    "provider reads the whole earlier conversation from its prompt cache",
    "turn 3: agents are rebuilt on every worker; the frozen prompt stored with each session "
    "keeps the prefix byte-identical, so the provider's cache still hits",
    "turn 4: {drained}'s sessions run on their new owners, which load history and "
    "frozen prompt from Redis",
)


@dataclass(frozen=True)
class TurnFigures:
    """One turn of one session, as the demo reports it."""

    session: str
    worker: str
    agent_reused: bool
    prompt_tokens: int
    cached_tokens: int
    cost: float
    uncached_cost: float
    seconds: float
    text: str

    @classmethod
    def of(cls, session: str, reply: Reply) -> TurnFigures:
        usage: dict[str, Any] = dict(reply.raw.get("usage") or {})
        uncached, cached = int(usage.get("input_tokens", 0)), int(usage.get("cache_read_tokens", 0))
        output = int(usage.get("output_tokens", 0))

        def cost(read: int) -> float:
            return call_cost(
                "openai",
                MODEL,
                input_tokens=uncached + cached - read,
                cache_read_tokens=read,
                cache_write_tokens=0,
                output_tokens=output,
            )

        return cls(
            session=session,
            worker=reply.worker_id,
            agent_reused=reply.cache_hit,
            prompt_tokens=uncached + cached,
            cached_tokens=cached,
            cost=cost(cached),
            uncached_cost=cost(0),
            seconds=max(
                0.0, float(reply.raw.get("ended_at", 0)) - float(reply.raw.get("started_at", 0))
            ),
            text=reply.text,
        )

    @property
    def hit_share(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


def _cell(turn: TurnFigures, before: TurnFigures | None) -> str:
    if turn.agent_reused:
        agent = "reused"
    elif before is not None and before.worker != turn.worker:
        agent = "built (moved)"
    else:
        agent = "built" if before is None else "rebuilt"
    return f"{turn.worker} {agent}, {turn.hit_share:.0%} cached"


def _step_row(label: str, turns: Sequence[TurnFigures]) -> list[object]:
    prompt = sum(t.prompt_tokens for t in turns)
    cached = sum(t.cached_tokens for t in turns)
    cost, uncached = sum(t.cost for t in turns), sum(t.uncached_cost for t in turns)
    return [
        label,
        len(turns),
        len({t.worker for t in turns}),
        sum(not t.agent_reused for t in turns),
        sum(t.agent_reused for t in turns),
        prompt,
        f"{cached} ({cached / prompt:.0%})" if prompt else "0",
        f"${cost:.4f} (${uncached:.4f})",
        f"{1000 * sum(t.seconds for t in turns) / len(turns):.0f}",
    ]


class _Demo:
    """One run of the story; ``say`` prints a line."""

    def __init__(
        self,
        cluster: EmbeddedCluster,
        sessions: list[str],
        messages: Sequence[str],
        say: Callable[[str], None],
    ) -> None:
        self.cluster = cluster
        self.sessions = sessions
        self.messages = messages
        self.say = say
        self.turns: list[list[TurnFigures]] = []

    def turn(self, step: int, explanation: str) -> None:
        text = self.messages[len(self.turns) % len(self.messages)]
        # Every session's message at once: the workers run them concurrently.
        handles = [self.cluster.submit_async(session, text) for session in self.sessions]
        figures = [
            TurnFigures.of(session, handle.result(timeout=30.0))
            for session, handle in zip(self.sessions, handles, strict=True)
        ]
        self.turns.append(figures)
        self.say(f"{step}. {explanation}")
        first = figures[0]
        self.say(f"   {first.session} <- {first.text.splitlines()[0][:100]}")

    def push(self, step: int, config: dict[str, Any], line: str) -> None:
        cached = sum(len(w.cache) for w in self.cluster.running_workers())
        version = self.cluster.publish_config(config, note=line)
        self.cluster.wait_for_config(version)
        # Eager eviction runs on each worker's event thread; give it a moment to finish.
        deadline = time.monotonic() + 2.0
        while cached and any(len(w.cache) for w in self.cluster.running_workers()):
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        left = sum(len(w.cache) for w in self.cluster.running_workers())
        released = f" ({cached - left} cached agents released)" if cached else ""
        self.say(f"{step}. config v{version} pushed: {line}{released}")

    def long_session(self, step: int, config: dict[str, Any]) -> list[list[object]]:
        """One session talks past a small context window; rows for the table of its turns."""
        version = self.cluster.publish_config(config, note="compression")
        self.cluster.wait_for_config(version)
        session = self.sessions[0]
        rows: list[list[object]] = []
        compressed_at: int | None = None
        for turn in range(5, 5 + LONG_SESSION_TURNS):
            reply = self.cluster.submit(session, f"{LONG_MESSAGE} (turn {turn})", timeout=30.0)
            figures = TurnFigures.of(session, reply)
            compressed = int(reply.raw.get("compressed") or 0)
            if compressed and compressed_at is None:
                compressed_at = turn
            rows.append(
                [
                    turn,
                    figures.worker,
                    figures.prompt_tokens,
                    f"{figures.cached_tokens} ({figures.hit_share:.0%})",
                    f"{compressed} earlier messages summarised (2 calls)" if compressed else "",
                ]
            )
            if compressed_at is not None and turn >= compressed_at + 2:
                break
        window = config["model"]["context_length"]
        if compressed_at is None:
            self.say(f"{step}. {session} never passed its context window of {window} tokens")
            return rows
        after = rows[compressed_at - 5 + 1]
        self.say(
            f"{step}. config v{version}: model.context_length {window} with compression on; "
            f"{session} talks on: at turn {compressed_at} its older turns were summarised "
            f"(committed with the turn), and turn {compressed_at + 1} read {after[3]} of its "
            "prompt from the provider's cache"
        )
        return rows

    def drain(self) -> str:
        owners = [t.worker for t in self.turns[-1]]
        busiest = max(sorted(set(owners)), key=owners.count)
        started = time.monotonic()
        finished = self.cluster.drain(busiest)
        self.say(
            f"6. {busiest} drained in {time.monotonic() - started:.2f}s "
            f"({'every turn finished' if finished else 'turns cut off and handed on'}): it "
            f"released its agents and left; its {owners.count(busiest)} session(s) move on"
        )
        return busiest


def _config(max_tokens: int) -> dict[str, Any]:
    return {"model": {"endpoint": "simulator", "default": MODEL, "max_tokens": max_tokens}}


# The simulated model refuses longer prompts; the last step's config says so.
CONTEXT_WINDOW = 4000
LONG_SESSION_TURNS = 16
LONG_MESSAGE = (
    "Add to the plan: a second museum in the afternoon, a picnic by the river if the weather "
    "holds, lunch near the station, and keep a rainy-day option with the indoor market, "
    "please, with opening hours and what the kids can do there"
)


def _compressing_config() -> dict[str, Any]:
    return {
        "model": {**_config(2048)["model"], "context_length": CONTEXT_WINDOW},
        "compression": {
            "enabled": True,
            "threshold": 0.75,
            "target_ratio": 0.5,
            "protect_last_n": 1,
        },
    }


def run_demo(
    *,
    workers: int = 3,
    sessions: int = 6,
    messages: Sequence[str] | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Run the story and print it; returns the exit code (0).

    Args:
        workers: Worker count (at least 2, so a drained worker's sessions can move).
        sessions: Concurrent conversations.
        messages: The messages of turns 1-4 (cycled); default :data:`DEMO_MESSAGES`.
        say: Where lines go.
    """
    workers, sessions = max(2, workers), max(1, sessions)
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="agent-cluster-demo-") as tmp,
        ProviderSimulator(context_window=CONTEXT_WINDOW) as sim,
    ):
        # The workers' "simulator" endpoint is this simulator (a free port, not 8199).
        simulator = Endpoint("simulator", "openai", sim.openai_base_url)
        with EmbeddedCluster(
            workers=workers,
            settings=ClusterSettings(
                heartbeat_interval=0.2, heartbeat_ttl=2.0, endpoints=(simulator,)
            ),
            sandbox_root=Path(tmp),
            environ=dict(os.environ),
        ) as cluster:
            say(
                f"agent-cluster demo: a coordinator and {workers} workers on one in-process "
                f"fakeredis, {sessions} conversations; the model is the provider simulator at "
                f"{sim.openai_base_url} (OpenAI wire format, prompt caching, list prices): "
                "no server, no api key"
            )
            demo = _Demo(
                cluster,
                [f"chat-{i}" for i in range(1, sessions + 1)],
                messages or DEMO_MESSAGES,
                say,
            )
            demo.push(
                1,
                _config(1024),
                f"every worker now builds openai agents for {MODEL} at the simulator",
            )
            demo.turn(2, STEPS[0])
            demo.turn(3, STEPS[1])
            demo.push(
                4,
                _config(2048),
                "model.max_tokens 1024 -> 2048, a cache-busting key",
            )
            demo.turn(5, STEPS[2])
            drained = demo.drain()
            workspace = " (and the workspace: turn 2's file is still there)" if not messages else ""
            demo.turn(7, STEPS[3].format(drained=drained) + workspace)
            long_rows = demo.long_session(8, _compressing_config())
            _report(demo, cluster, say, long_rows)
    say(f"done in {time.monotonic() - started:.1f}s")
    return 0


def _report(
    demo: _Demo,
    cluster: EmbeddedCluster,
    say: Callable[[str], None],
    long_rows: list[list[object]],
) -> None:
    labels = ("turn 1", "turn 2", "turn 3 (after push)", "turn 4 (after drain)")
    say("")
    rows = []
    for i, session in enumerate(demo.sessions):
        cells: list[object] = [session]
        for n, turns in enumerate(demo.turns):
            cells.append(_cell(turns[i], demo.turns[n - 1][i] if n else None))
        rows.append(cells)
    say(table(["session", *labels], rows))
    say("")
    say(
        table(
            [
                "step",
                "turns",
                "workers",
                "agents built",
                "agents reused",
                "prompt tokens",
                "cached tokens",
                "cost (without prompt cache)",
                "ms/turn (worker)",
            ],
            [_step_row(label, turns) for label, turns in zip(labels, demo.turns, strict=True)],
        )
    )
    everything = [t for turns in demo.turns for t in turns]
    cost, uncached = sum(t.cost for t in everything), sum(t.uncached_cost for t in everything)
    say(
        f"prompt cache: the provider billed ${cost:.4f}; the same prompts without a warm prefix "
        f"would cost ${uncached:.4f} ({uncached / cost:.1f}x)"
        if cost
        else ""
    )
    say("")
    say(
        table(
            [f"{demo.sessions[0]} turn", "worker", "prompt tokens", "cached tokens", "compression"],
            long_rows,
        )
    )
    say("")
    say("what `agent-cluster status` shows now:")
    say(render_status(_fresh_status(cluster)))


def _fresh_status(cluster: EmbeddedCluster, timeout: float = 2.0) -> ClusterStatus:
    """The status once every worker has written a health record after the last turn."""
    since = time.time()
    deadline = time.monotonic() + timeout
    while True:
        status = cluster.status()
        fresh = all(w.health is not None and w.health.written_at >= since for w in status.workers)
        if fresh or time.monotonic() > deadline:
            return status
        time.sleep(0.02)
