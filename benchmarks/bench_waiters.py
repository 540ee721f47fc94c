"""How many waiting callers one gateway process holds, on how many Redis connections.

Run: ``.venv/bin/python benchmarks/bench_waiters.py [--levels 100,1000,10000] [--ttft 8]
[--clients 3] [--seconds 150] [--trace-memory | --profile | --probe]``

Starts its own redis-server on a free loopback port, the provider simulator
in a process of its own (every model call waits ``--ttft`` seconds before its
first token; in the bench's own process its threads, streaming 10,000
answers, held the GIL the newcomer's timing and the Redis PING need, and
inflated both), 2 worker
processes (each running up to 500 turns at once; more callers wait in its
queue) and one gateway (``agent-cluster serve``). For each level N it starts
``--clients`` client processes (asyncio, raw HTTP/1.1 on loopback) that send
N callers together, a third each of JSON, native SSE and OpenAI streams, and
read every answer; bounded by ``--seconds`` per level. While they wait it
samples the callers held (sent, not answered), the Redis connections the
gateway process holds (``CLIENT LIST`` entries whose port is one of the
gateway's sockets), the gateway's RSS and CPU. Three seconds after the last
caller was sent and admitted (``/readyz`` counts them all: the arrivals and
the turn starts are over) it pauses both workers (``SIGSTOP``; the bench's
cluster runs with a heartbeat TTL long enough that nobody takes them for
dead) so that the callers are held while nothing answers them, waits until
the gateway passed on what the workers sent before (its CPU below 20% of a
core over half a second, 15 s at most), and takes
the gateway's RSS growth per caller held, its CPU use over the next 2 s
(the cost of holding them) and a newcomer's quick message (``/stop`` to a
fresh session: accepted and answered by the gateway without a model call,
median of 20) then; it resumes the workers, waits for the first answers
and times the newcomer again and the gateway's CPU while the answers
stream. Both newcomer figures are compared with the same measure on the
idle gateway just before the level, and each comes with the median time
of a ``PING`` to Redis from the bench at the same moment (what each of the
newcomer's Redis round trips costs on the machine then); the machine's load average is
recorded at each level's start and end (this 2-core machine is shared: the
workers, the clients and Redis run on the same cores as the gateway).
Prints one table row per level, the newcomer's loaded latency also as a
ratio of its idle one. ``--trace-memory`` runs the gateway with tracemalloc
(``benchmarks/traced_gateway.py``) and prints, per level, the Python memory
per waiting caller by package and the source lines holding most of it
(tracing slows the gateway: its other figures are not comparable then).
``--profile`` runs the gateway with cProfile and a loop-lag probe in each
measured window (``benchmarks/profiled_gateway.py``) and prints, per level
and window, the loop thread's CPU, how late the loop ran a callback, and the
functions with the most own time (profiling slows the gateway too);
``--probe`` runs the probe alone (no function profile: the gateway runs
at its usual speed).
``--priority`` runs the gateway, Redis and the bench's own thread (the
newcomer's client) at nice -10, standing for machines of their own: the
workers and the waiting callers' clients share what the cores have left
(needs root; on this 2-core machine every process otherwise competes with
the gateway for the same cores).
Loopback only; nothing is left running.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis

from cluster.keys import Keyspace
from cluster.settings import ClusterSettings
from cluster.versions import RedisVersionStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cluster import free_port, redis_server, use_simulator  # noqa: E402

from coordinator.bench.waiters import (  # the same callers and gateway probes as figure 4
    Callers,
    _admitted,
    _memory_trace,
    _newcomer,
    _per_caller,
    _proc_stats,
    _redis_connections,
    start_workers,
)

NAMESPACE = "benchwait"
# Seconds after the last caller was admitted before the held figures are taken (the
# workers' turn starts are over: the callers wait on the model), and the window over
# which the gateway's CPU is measured then.
SETTLE = 3.0
HOLD_WINDOW = 2.0
# After the workers were paused, the held figures wait until the gateway passed on what
# they sent before: its CPU over PAUSE_DRAIN seconds below QUIET_CPU of a core, or
# DRAIN_LIMIT seconds. Most seconds to wait for the first answers after the resume.
PAUSE_DRAIN = 0.5
QUIET_CPU = 0.2
DRAIN_LIMIT = 15.0
FIRST_ANSWERS = 20.0
# The bench's heartbeat TTL: a worker paused for the held figures is not taken for dead.
HEARTBEAT_TTL = 90


def _redis_ping(client: redis.Redis, samples: int = 20) -> float:
    """Median milliseconds of a PING to the cluster's Redis from this process: what one of
    the newcomer's Redis round trips costs on the machine at that moment."""
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        client.ping()
        times.append(time.perf_counter() - started)
        time.sleep(0.01)
    return statistics.median(times) * 1000


def _cpu_over(pid: int, seconds: float) -> float:
    """Share of one core the process used over the next ``seconds``."""
    cpu0 = _proc_stats(pid)[1]
    time.sleep(seconds)
    return (_proc_stats(pid)[1] - cpu0) / seconds


class _Profile:
    """The profile windows of a gateway run by ``profiled_gateway.py`` (SIGUSR2 toggles)."""

    def __init__(self, gw_pid: int, out: Path) -> None:
        self.gw_pid, self.out, self.count = gw_pid, out, 0

    def start(self) -> None:
        os.kill(self.gw_pid, signal.SIGUSR2)

    def stop(self) -> list[str]:
        """End the window; its report's lines."""
        os.kill(self.gw_pid, signal.SIGUSR2)
        self.count += 1
        path = self.out.with_name(f"{self.out.name}.{self.count}")
        deadline = time.monotonic() + 60
        while not path.exists():
            assert time.monotonic() < deadline, "the profiled gateway wrote no report"
            time.sleep(0.1)
        time.sleep(0.5)  # let it finish writing
        return path.read_text().splitlines()


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        os.kill(pid, sig)


def run_level(
    n: int,
    port: int,
    gw_pid: int,
    worker_pids: list[int],
    client: redis.Redis,
    clients: int,
    seconds: float,
    trace: Path | None = None,
    profile: _Profile | None = None,
) -> dict[str, Any]:
    load_start = os.getloadavg()[0]
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    idle_ms = _newcomer(http)
    ping_ms = [_redis_ping(client), 0.0, 0.0]
    rss0, cpu0 = _proc_stats(gw_pid)
    traced_before = _memory_trace(gw_pid, trace) if trace is not None else []
    traced_loaded: list[tuple[int, int, str]] = []
    callers = Callers(n, port, clients, seconds)
    held, sent, started = callers.held, callers.sent, callers.started
    peak_held, peak_conns, peak_rss = 0, 0, rss0
    held_ms = loaded_ms = 0.0
    all_sent_at = settled_held = holding_cpu = streaming_cpu = admitted_s = drained_s = 0.0
    answered_then = 0
    settled_rss = rss0
    profiles: dict[str, list[str]] = {}
    while callers.running(seconds + 10):
        peak_held = max(peak_held, held.value)
        peak_conns = max(peak_conns, _redis_connections(client, gw_pid))
        peak_rss = max(peak_rss, _proc_stats(gw_pid)[0])
        if not all_sent_at and sent.value >= n and _admitted(http) >= held.value:
            all_sent_at = time.monotonic()  # every caller sent and admitted by the gateway
            admitted_s = all_sent_at - started
        # Once every caller is in and the gateway settled: with the workers paused (the
        # callers held, nothing answers), memory, the CPU of holding them, the newcomer and
        # the trace; then, the workers resumed and answers streaming, the newcomer again.
        if all_sent_at and not held_ms and time.monotonic() - all_sent_at >= SETTLE:
            _signal_all(worker_pids, signal.SIGSTOP)
            try:
                paused = time.monotonic()
                while (
                    _cpu_over(gw_pid, PAUSE_DRAIN) > QUIET_CPU
                    and time.monotonic() - paused < DRAIN_LIMIT
                ):
                    pass  # the gateway still passes on what the workers sent before the pause
                drained_s = time.monotonic() - paused
                settled_held, settled_rss = held.value, _proc_stats(gw_pid)[0]
                answered_then = sent.value - held.value
                if profile is not None:
                    profile.start()
                holding_cpu = _cpu_over(gw_pid, HOLD_WINDOW)
                held_ms = _newcomer(http)
                ping_ms[1] = _redis_ping(client)
                if profile is not None:
                    profiles["held, workers paused"] = profile.stop()
                if trace is not None:
                    traced_loaded = _memory_trace(gw_pid, trace)
            finally:
                _signal_all(worker_pids, signal.SIGCONT)
            resumed = time.monotonic()
            while (
                sent.value - held.value <= answered_then
                and time.monotonic() - resumed < FIRST_ANSWERS
            ):
                time.sleep(0.05)
            if profile is not None:
                profile.start()
            streaming_cpu = _cpu_over(gw_pid, 1.0)
            loaded_ms = _newcomer(http)
            ping_ms[2] = _redis_ping(client)
            if profile is not None:
                profiles["answers streaming"] = profile.stop()
        time.sleep(0.2)
    answers, errors = callers.outcome()
    _rss, cpu1 = _proc_stats(gw_pid)
    http.close()
    return {
        "callers": n,
        "held": peak_held,
        "answers": answers,
        "errors": errors,
        "redis_conns": peak_conns,
        "rss_mib": peak_rss,
        "cpu_s": cpu1 - cpu0,
        "kib_per_caller": (settled_rss - rss0) * 1024 / max(1, settled_held),
        "settled_held": settled_held,
        "admitted_s": admitted_s,
        "drained_s": drained_s,
        "holding_cpu": holding_cpu,
        "streaming_cpu": streaming_cpu,
        "newcomer_idle_ms": idle_ms,
        "newcomer_held_ms": held_ms,
        "newcomer_loaded_ms": loaded_ms,
        "redis_ping_ms": ping_ms,
        "load": (load_start, os.getloadavg()[0]),
        "seconds": time.monotonic() - started,
        "trace": _per_caller(traced_before, traced_loaded, int(settled_held)),
        "profiles": profiles,
    }


def _print_table(
    rows: list[dict[str, Any]], ttft: float, clients: int, *, traced: bool, priority: bool
) -> None:
    first = f", gateway and Redis at nice {PRIORITY}" if priority else ""
    print(
        f"\nttft {ttft:g}s, {clients} client processes{', gateway traced' if traced else ''}"
        f"{first}\n"
    )
    print(
        "| callers | held | answered | errors | Redis conns | gateway RSS | gateway CPU "
        "| CPU holding (workers paused) / streaming | KiB/caller "
        "| newcomer idle / held / streaming | held/idle | streaming/idle "
        "| Redis PING idle / held / streaming | load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        idle = r["newcomer_idle_ms"] or math.inf
        print(
            f"| {r['callers']:,} | {r['held']:,} | {r['answers']:,} | {r['errors']:,} "
            f"| {r['redis_conns']} | {r['rss_mib']:.0f} MiB | {r['cpu_s']:.1f} s "
            f"| {r['holding_cpu']:.0%} / {r['streaming_cpu']:.0%} | {r['kib_per_caller']:.1f} "
            f"| {r['newcomer_idle_ms']:.1f} / {r['newcomer_held_ms']:.1f} / "
            f"{r['newcomer_loaded_ms']:.1f} ms | {r['newcomer_held_ms'] / idle:.2f}x "
            f"| {r['newcomer_loaded_ms'] / idle:.2f}x "
            f"| {' / '.join(f'{ms:.2f}' for ms in r['redis_ping_ms'])} ms "
            f"| {r['load'][0]:.1f}-{r['load'][1]:.1f} |"
        )
    for r in rows:
        for phase, lines in r["profiles"].items():
            print(f"\nprofiled gateway at {r['callers']:,} callers, {phase}:\n")
            cut = lines.index("--")
            for line in lines[:cut]:
                print("    " + line.replace("\t", " "))
            print("\n| own s | cumulative s | calls | function |\n|---|---|---|---|")
            for line in lines[cut + 1 : cut + 16]:
                print("| " + " | ".join(line.split("\t", 3)) + " |")
    for r in rows:
        if not r["trace"]:
            continue
        print(f"\ntraced Python memory per waiting caller at {r['callers']:,} callers:\n")
        print("| where | KiB/caller | blocks/caller |")
        print("|---|---|---|")
        cut = [where for where, _, _ in r["trace"]].index("--")
        lines, packages = r["trace"][:cut], r["trace"][cut + 1 :]
        for where, kib, blocks in sorted(packages, key=lambda t: -t[1])[:8]:
            print(f"| package {where} | {kib:.2f} | {blocks:.1f} |")
        for where, kib, blocks in sorted(lines, key=lambda t: -t[1])[:60]:
            short = where.split("site-packages/")[-1].replace(str(Path.cwd()) + "/", "")
            print(f"| {short} | {kib:.2f} | {blocks:.1f} |")


PRIORITY = -10
"""The nice value of the gateway, Redis and the newcomer's client with ``--priority``."""


def _gateway_limits(files: int, priority: bool) -> None:
    """In the gateway's process before it starts: its file limit, its priority (all threads)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
    if priority:
        os.setpriority(os.PRIO_PROCESS, 0, PRIORITY)


@contextlib.contextmanager
def _simulator(ttft: float, tmp: Path) -> Iterator[str]:
    """The provider simulator in a process of its own; yields its OpenAI base URL."""
    port = free_port()
    with (tmp / "simulator.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "coordinator.cli", "simulate-llm"]
            + ["--host", "127.0.0.1", "--port", str(port), "--ttft", str(ttft)],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "no simulator"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", default="100,1000,10000")
    parser.add_argument("--ttft", type=float, default=8.0, help="the model's time to first token")
    parser.add_argument("--clients", type=int, default=3, help="client processes")
    parser.add_argument("--seconds", type=float, default=150.0, help="bound of each level")
    parser.add_argument(
        "--trace-memory", action="store_true", help="tracemalloc in the gateway (slower)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile and a loop-lag probe in the gateway"
    )
    parser.add_argument(
        "--probe", action="store_true", help="the loop-lag probe alone in the gateway (no cProfile)"
    )
    parser.add_argument(
        "--priority",
        action="store_true",
        help="the gateway, Redis and the newcomer's client at nice -10 (root)",
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = Path(tempfile.mkdtemp(prefix="bench-waiters-"))
    env = {
        **os.environ,
        "OPENAI_API_KEY": "sk-bench",
        "AGENT_CLUSTER_HOME": str(tmp / "home"),
        "AGENT_CLUSTER_SANDBOX": "auto",
        "AGENT_CLUSTER_HEARTBEAT_TTL": str(HEARTBEAT_TTL),
    }
    if "gateway_max_waiting" in {f.name for f in ClusterSettings.__dataclass_fields__.values()}:
        env["AGENT_CLUSTER_GATEWAY_MAX_WAITING"] = str(max(levels) + 100)
    procs: list[subprocess.Popen[bytes]] = []
    rows = []
    with redis_server(tmp) as url, _simulator(args.ttft, tmp) as openai_base_url:
        client = redis.Redis.from_url(url, socket_timeout=60)
        client.config_set("maxclients", 19000)
        if args.priority:
            os.setpriority(os.PRIO_PROCESS, int(client.info("server")["process_id"]), PRIORITY)
            os.setpriority(os.PRIO_PROCESS, 0, PRIORITY)  # this thread: the newcomer's client
        RedisVersionStore(client, Keyspace(NAMESPACE)).publish_config(
            use_simulator(openai_base_url)
        )
        env["AGENT_CLUSTER_ENDPOINTS"] = os.environ["AGENT_CLUSTER_ENDPOINTS"]
        common = ["--redis-url", url, "--namespace", NAMESPACE]
        port = free_port()
        # Past this many turns at once per worker, callers wait in the queue (still waiting).
        concurrency = str(min(500, max(levels) // 2 + 50))
        try:
            procs += start_workers(common, concurrency, env, tmp)
            trace = tmp / "tracemalloc.txt" if args.trace_memory else None
            entry = ["-m", "coordinator.cli"]
            if trace is not None:
                env["BENCH_TRACEMALLOC_OUT"] = str(trace)
                entry = [str(Path(__file__).resolve().parent / "traced_gateway.py")]
            elif args.profile or args.probe:
                env["BENCH_PROFILE_OUT"] = str(tmp / "profile")
                env["BENCH_PROFILE_FUNCTIONS"] = "1" if args.profile else "0"
                entry = [str(Path(__file__).resolve().parent / "profiled_gateway.py")]
            with (tmp / "gw.log").open("ab") as log:
                gw = subprocess.Popen(
                    [sys.executable, *entry, "serve", "--anonymous"]
                    + ["--port", str(port), "--turn-timeout", str(args.seconds), *common],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    preexec_fn=lambda: _gateway_limits(hard, args.priority),
                )
            procs.append(gw)
            deadline = time.monotonic() + 60
            while True:
                try:
                    ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).json()
                    if ready.get("live_workers", 0) >= 2:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the cluster did not start"
                time.sleep(0.2)
            for n in levels:
                workers = [proc.pid for proc in procs[:2]]
                profiled = (args.profile or args.probe) and not trace
                profile = _Profile(gw.pid, tmp / "profile") if profiled else None
                rows.append(
                    run_level(
                        n, port, gw.pid, workers, client, args.clients, args.seconds, trace, profile
                    )
                )
                shown = {k: v for k, v in rows[-1].items() if k not in ("trace", "profiles")}
                print(shown, flush=True)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=60)
            client.close()
    _print_table(rows, args.ttft, args.clients, traced=args.trace_memory, priority=args.priority)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
