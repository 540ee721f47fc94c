"""Steer and collect against enqueue: a message sent while its session's turn runs.

Run: ``.venv/bin/python benchmarks/bench_steer.py [--runs 5] [--ttft 1.0]``

Starts its own redis-server, the provider simulator (every model call takes
``--ttft`` seconds to its first token) and two worker processes. Per run and
mode, a session's turn is started, and once its model call is in flight a
second message is sent from another coordinator: with ``enqueue`` (the
baseline, measured in the same run: it waits for the running turn, then runs
a turn of its own), with ``steer`` (taken into the running turn at its next
safe point: after the model's reply, one more model call answers it; when the
running turn calls a tool, ``!sh sleep 0.5``, the model call after the tool
result answers both). For
``collect`` three messages are sent while the turn runs, against three
``enqueue`` ones. Measured: from the (first) extra message's submit to the
last extra answer, the model calls the extra messages cost, and the prompt
tokens sent for them (the simulator's count).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.simulator import ProviderSimulator  # noqa: E402
from benchmarks.bench_cluster import redis_server, use_simulator  # noqa: E402
from benchmarks.bench_interrupt import in_model_call  # noqa: E402
from benchmarks.bench_recovery import start_worker, wait_live  # noqa: E402
from cluster.connection import connect  # noqa: E402
from cluster.keys import Keyspace  # noqa: E402
from cluster.settings import ClusterSettings  # noqa: E402
from cluster.versions import RedisVersionStore  # noqa: E402
from coordinator.ingress import Coordinator  # noqa: E402

# (label, strategy, extra messages, whether the running turn calls a tool first)
MODES = (
    ("enqueue", "enqueue", 1, False),
    ("steer", "steer", 1, False),
    ("enqueue, running turn runs a tool", "enqueue", 1, True),
    ("steer, running turn runs a tool", "steer", 1, True),
    ("enqueue x3", "enqueue", 3, False),
    ("collect x3", "collect", 3, False),
)


def one_run(
    sim: ProviderSimulator,
    first: Coordinator,
    second: Coordinator,
    session: str,
    strategy: str,
    extra: int,
    ttft: float,
    tool: bool,
) -> tuple[float, int, int]:
    """(seconds to the last extra answer, model calls after the first extra message was
    sent, prompt tokens of the running turn and the extra messages' turns together)."""
    sim.set_latency(ttft=0.0)
    first.submit(session, "warm up", timeout=30)
    sim.set_latency(ttft=ttft)
    question = f"{session}: the running question"
    running = first.submit_async(session, f"!sh sleep 0.5; echo {question}" if tool else question)
    while not in_model_call(sim, question):
        time.sleep(0.002)
    calls_before = len(sim.recorded_requests())
    sent = time.monotonic()
    extras = [
        second.submit_async(session, f"{session}: extra {i}", strategy=strategy)
        for i in range(extra)
    ]
    replies = [running.result(timeout=60)] + [h.result(timeout=60) for h in extras]
    took = time.monotonic() - sent
    calls = len(sim.recorded_requests()) - calls_before
    turns = {r.raw["turn"]: r.raw["usage"] for r in replies}  # a folded reply repeats its turn's
    prompt = sum(int(u["input_tokens"]) + int(u["cache_read_tokens"]) for u in turns.values())
    return took, calls, prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ttft", type=float, default=1.0)
    args = parser.parse_args()
    namespace = "steer"
    results: dict[str, list[tuple[float, int, int]]] = {mode[0]: [] for mode in MODES}
    with (
        tempfile.TemporaryDirectory() as tmp,
        redis_server(Path(tmp)) as url,
        ProviderSimulator() as sim,
    ):
        client = connect(url)
        RedisVersionStore(client, Keyspace(namespace), max_config_bytes=1 << 20).publish_config(
            use_simulator(sim.openai_base_url)
        )
        settings = ClusterSettings(redis_url=url, namespace=namespace, collect_window=0.2)
        os.environ["AGENT_CLUSTER_COLLECT_WINDOW"] = "0.2"  # the workers inherit it
        workers = [start_worker(url, namespace, f"w{i}", Path(tmp) / f"w{i}.log") for i in range(2)]
        wait_live(settings, "w0", "w1")
        first, second = Coordinator(settings=settings), Coordinator(settings=settings)
        try:
            for run in range(args.runs):
                for index, (mode, strategy, extra, tool) in enumerate(MODES):
                    session = f"s{index}-{run}"  # equal lengths: equal token counts
                    results[mode].append(
                        one_run(sim, first, second, session, strategy, extra, args.ttft, tool)
                    )
                print(f"run {run + 1}/{args.runs} done", flush=True)
        finally:
            first.close()
            second.close()
            for worker in workers:
                worker.terminate()
                worker.wait(timeout=60)
    print()
    print(f"model time to first token {args.ttft:g} s; medians of {args.runs} runs")
    print()
    print(
        "| extra messages sent while a turn runs | last extra answered after | vs enqueue "
        "| model calls after it was sent | prompt tokens, running turn + extras | vs enqueue |"
    )
    print("|---|---|---|---|---|---|")
    for index, (mode, _strategy, _extra, _tool) in enumerate(MODES):
        base_mode = MODES[index - index % 2][0]  # the enqueue row above it
        took = statistics.median(r[0] for r in results[mode])
        base = statistics.median(r[0] for r in results[base_mode])
        calls = statistics.median(r[1] for r in results[mode])
        prompt = statistics.median(r[2] for r in results[mode])
        base_prompt = statistics.median(r[2] for r in results[base_mode]) or 1
        print(
            f"| {mode} | {took:.2f} s | {took / base:.2f}x | {calls:g} | {prompt:g} | "
            f"{prompt / base_prompt:.2f}x |"
        )


if __name__ == "__main__":
    main()
