"""What a config push or a move costs in provider cache, against an in-process ideal.

Run: ``.venv/bin/python benchmarks/bench_prompt_reuse.py [--sessions 20] [--turns 6]``

Each session's first message adds a memory note (the ``memory`` tool), so an
agent that *rebuilds* its system prompt afterwards writes a different one (the
notes are part of the prompt) and the provider's cache misses from there on;
an agent rebuilt on the session's stored frozen prompt sends the same bytes.

The ideal: one ``AIAgent`` per session in this process, never rebuilt. Each
scenario runs the same messages through an embedded cluster (three workers on
fakeredis, the openai provider against the simulator), with an event after
half the turns, each on a cold simulator:

- ``nothing``: no event;
- ``push (rebuilds nothing)``: a config push that busts no agent;
- ``push model.max_tokens``: a request parameter: rebuilds every agent, which
  reuses its stored frozen prompt (keyed by what builds the prompt);
- ``drain the busiest worker``: its sessions move and rebuild elsewhere;
- ``push agent.ephemeral_system_prompt``: a new prompt by design (the control).

Prints the simulator's priced cost of each scenario and its ratio to the ideal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import AIAgent  # noqa: E402
from agent.simulator import ProviderSimulator  # noqa: E402
from agent.tools import FileToolStateStore, ToolEnvironment  # noqa: E402
from cluster.endpoints import Endpoint  # noqa: E402
from cluster.settings import ClusterSettings  # noqa: E402
from coordinator.embedded import EmbeddedCluster  # noqa: E402

MODEL = "sim-gpt"
KEY = "sk-bench-prompt-reuse"


def messages(session: int, turns: int) -> list[str]:
    note = json.dumps({"action": "add", "text": f"session {session} prefers trams to taxis"})
    return [f"!tool memory {note}"] + [
        f"session {session}, turn {t}: plan the next stop" for t in range(1, turns)
    ]


def config(**model: Any) -> dict[str, Any]:
    return {"model": {"endpoint": "simulator", "default": MODEL, "max_tokens": 1024, **model}}


def ideal(sessions: int, turns: int, tmp: Path) -> float:
    with ProviderSimulator() as sim:
        env = ToolEnvironment(sandbox_root=tmp / "ideal-sb", state=FileToolStateStore(tmp / "st"))
        agents = [
            AIAgent(
                model=MODEL,
                api_key=KEY,
                base_url=sim.openai_base_url,
                provider="openai",
                session_id=f"s{i}",
                platform="http",
                tool_env=env,
                skip_context_files=True,
            )
            for i in range(sessions)
        ]
        for turn in range(turns):
            for i, agent in enumerate(agents):
                agent.run_conversation(messages(i, turns)[turn])
        for agent in agents:
            agent.release_clients()
        return float(sim.stats()["total"]["cost_usd"])


def scenario(
    sessions: int, turns: int, tmp: Path, event: Callable[[EmbeddedCluster], None]
) -> float:
    with ProviderSimulator() as sim:
        endpoint = Endpoint("simulator", "openai", sim.openai_base_url)
        with EmbeddedCluster(
            workers=3,
            settings=ClusterSettings(endpoints=(endpoint,)),
            sandbox_root=tmp / f"sb-{id(event)}",
            environ={**os.environ, "OPENAI_API_KEY": KEY},
        ) as cluster:
            cluster.wait_for_config(cluster.publish_config(config()))
            for turn in range(turns):
                if turn == turns // 2:
                    event(cluster)
                handles = [
                    cluster.submit_async(f"s{i}", messages(i, turns)[turn]) for i in range(sessions)
                ]
                for handle in handles:
                    handle.result(timeout=60)
        return float(sim.stats()["total"]["cost_usd"])


def push(document: dict[str, Any]) -> Callable[[EmbeddedCluster], None]:
    def event(cluster: EmbeddedCluster) -> None:
        cluster.wait_for_config(cluster.publish_config(document))

    return event


def drain_busiest(cluster: EmbeddedCluster) -> None:
    owners = Counter(w.worker_id for w in cluster.running_workers() for _ in range(len(w.cache)))
    cluster.drain(owners.most_common(1)[0][0] if owners else cluster.running_workers()[0].worker_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--turns", type=int, default=6)
    args = parser.parse_args()
    scenarios: list[tuple[str, Callable[[EmbeddedCluster], None]]] = [
        ("nothing", lambda cluster: None),
        ("push (rebuilds nothing)", push({**config(), "agent": {"max_iterations": 9}})),
        ("push model.max_tokens", push(config(max_tokens=2048))),
        ("drain the busiest worker", drain_busiest),
        (
            "push agent.ephemeral_system_prompt",
            push({**config(), "agent": {"ephemeral_system_prompt": "Be brief."}}),
        ),
    ]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        base = ideal(args.sessions, args.turns, tmp)
        rows = [
            (name, scenario(args.sessions, args.turns, tmp, event)) for name, event in scenarios
        ]
    print(
        f"{args.sessions} sessions x {args.turns} turns (a memory note each), event before turn "
        f"{args.turns // 2 + 1}; simulator cost against one in-process agent per session"
    )
    print()
    print("| scenario | cost USD | vs ideal |")
    print("|---|---|---|")
    print(f"| ideal (in-process, never rebuilt) | {base:.5f} | 1.0000x |")
    for name, cost in rows:
        print(f"| {name} | {cost:.5f} | {cost / base:.4f}x |")


if __name__ == "__main__":
    main()
