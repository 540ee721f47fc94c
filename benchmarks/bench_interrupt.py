"""Interrupt latency across workers: a message with strategy ``interrupt`` stops the running turn.

Run: ``.venv/bin/python benchmarks/bench_interrupt.py [--runs 20]``

Starts its own redis-server, the provider simulator (a 30 s time to first
token, so every turn is stuck in its model call) and two worker processes.
Per run: one coordinator starts a turn, waits until it holds its lease (the
model call is in flight on whichever worker owns the session), then a second
coordinator sends a message with ``strategy="interrupt"``. Measured: from that
submit to the first turn's (interrupted) reply arriving, and to the new
message's answer. Then ``/stop`` while the turn runs ``!sh sleep 30``
(in its sandbox): from the ``/stop`` submit to the command's processes gone,
and to the stopped turn's reply (with the command's partial output). Baseline
in the same run: a plain turn's round trip with a zero-latency model (what any
reply costs to travel back).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.simulator import ProviderSimulator  # noqa: E402
from benchmarks.bench_cluster import redis_server, use_simulator  # noqa: E402
from benchmarks.bench_recovery import start_worker, wait_live  # noqa: E402
from cluster.connection import connect  # noqa: E402
from cluster.keys import Keyspace  # noqa: E402
from cluster.settings import ClusterSettings  # noqa: E402
from cluster.versions import RedisVersionStore  # noqa: E402
from coordinator.bench.hot_path import percentile
from coordinator.ingress import Coordinator  # noqa: E402


def running(marker: str) -> bool:
    """Whether a live process has ``marker`` in its command line."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                stat = (entry / "stat").read_text()
                if stat[stat.rfind(")") + 2] not in "ZX":
                    return True
        except OSError:
            continue
    return False


def in_model_call(sim: ProviderSimulator, text: str) -> bool:
    """Whether the simulator has received the model call of the message ``text``."""
    return any(text.encode() in r.body for r in sim.recorded_requests())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    namespace = "interrupt"
    with (
        tempfile.TemporaryDirectory() as tmp,
        redis_server(Path(tmp)) as url,
        ProviderSimulator() as sim,
    ):
        client = connect(url)
        RedisVersionStore(client, Keyspace(namespace), max_config_bytes=1 << 20).publish_config(
            use_simulator(sim.openai_base_url)
        )
        settings = ClusterSettings(redis_url=url, namespace=namespace)
        workers = [start_worker(url, namespace, f"w{i}", Path(tmp) / f"w{i}.log") for i in range(2)]
        wait_live(settings, "w0", "w1")
        first, second = Coordinator(settings=settings), Coordinator(settings=settings)
        stopped, answered, baseline, killed, stop_replied = [], [], [], [], []
        try:
            for run in range(args.runs):
                session = f"bench-{run}"
                sim.set_latency(ttft=0.0)
                started = time.monotonic()
                first.submit(session, "warm up", timeout=30)
                baseline.append(time.monotonic() - started)
                sim.set_latency(ttft=30.0)
                question = f"a long question {run}"
                stuck = first.submit_async(session, question)
                while not in_model_call(sim, question):
                    time.sleep(0.005)
                sent = time.monotonic()
                newer = second.submit_async(session, "this instead", strategy="interrupt")
                reply = stuck.result(timeout=60)
                stopped.append(time.monotonic() - sent)
                assert reply.raw["interrupted"], reply.raw
                sim.set_latency(ttft=0.0)
                newer.result(timeout=60)
                answered.append(time.monotonic() - sent)
                pause = f"sleep 30.{uuid.uuid4().int % 10**6:06d}"
                command = first.submit_async(session, f"!sh echo started; {pause}")
                while not running(pause):
                    time.sleep(0.002)
                sent = time.monotonic()
                first.submit(session, "/stop", timeout=30)
                while running(pause):
                    time.sleep(0.002)
                killed.append(time.monotonic() - sent)
                reply = command.result(timeout=60)
                stop_replied.append(time.monotonic() - sent)
                assert reply.raw["interrupted"] and "started" in reply.text, reply.raw
                print(
                    f"run {run + 1}/{args.runs}: interrupt stopped the model call in "
                    f"{stopped[-1] * 1000:.1f} ms; /stop killed the command in "
                    f"{killed[-1] * 1000:.1f} ms, its reply in {stop_replied[-1] * 1000:.1f} ms",
                    flush=True,
                )
        finally:
            first.close()
            second.close()
            for worker in workers:
                worker.terminate()
                worker.wait(timeout=60)
    base = statistics.median(baseline)
    print()
    print("| across 2 worker processes | p50 | p99 | p50 vs a plain turn's round trip |")
    print("|---|---|---|---|")
    print(
        f"| plain turn round trip, zero-latency model (baseline) | {base * 1000:.1f} ms | "
        f"{percentile(baseline, 0.99) * 1000:.1f} ms | 1.00x |"
    )
    for label, samples in (
        ("interrupt in -> running turn stopped, its reply delivered", stopped),
        ("interrupt in -> the new message answered", answered),
        ("/stop in -> the running `sleep 30` command killed (its sandbox gone)", killed),
        ("/stop in -> the stopped turn's reply (with the partial output) delivered", stop_replied),
    ):
        mid = statistics.median(samples)
        print(
            f"| {label} | {mid * 1000:.1f} ms | {percentile(samples, 0.99) * 1000:.1f} ms | "
            f"{mid / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
