"""One worker process under a burst of slow turns, against the bare SDK in the same run.

Run: ``.venv/bin/python benchmarks/bench_worker_load.py [--levels 32,128,512,1024] [--ttft 2]``

Starts its own redis-server and provider simulator (a separate process; every
reply's first token comes after ``--ttft`` seconds), then for each
concurrency level C starts one worker process (``--concurrency C``, the
openai provider against the simulator, a cache holding every session's agent)
and measures:

- new sessions: C turns of C new sessions submitted at once: failures (error
  replies and callers left without an answer), turns/s, peak thread count and
  RSS of the worker;
- cached burst: a second message to each of the C sessions at once (all
  cache hits; the 2 s TTFT of the last ones is part of the time);
- cached turns: then each of the C sessions sends its next message as soon as
  the last was answered, for ``--sustain`` seconds (every turn a cache hit):
  turns/s against the ceiling ``C / ttft`` and the worker's CPU per turn;
- after the burst: how long the worker takes to get back to its idle thread
  count (reported when it does within ``--settle`` seconds);
- Redis round trips per cached turn, counted at the client: the caller's (this
  process's coordinator) and the worker's (its
  ``agent_cluster_redis_round_trips_total``), and the idle worker's requests
  per second before the burst.

Baseline, same run: the bare ``openai`` SDK in this process, one shared
client, C threads sending the same messages as a cached turn (system prompt,
tools, history) to the same simulator: its CPU per call is the floor a worker
cannot go below.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openai  # noqa: E402

from agent.providers.openai_chat import to_openai_messages, to_openai_tools  # noqa: E402
from benchmarks.bench_cluster import free_port, redis_server, use_simulator  # noqa: E402
from cluster.connection import blocking_client, connect, count_round_trips  # noqa: E402
from cluster.errors import AgentClusterError  # noqa: E402
from cluster.keys import Keyspace  # noqa: E402
from cluster.membership import RedisMembership  # noqa: E402
from cluster.session_store import RedisSessionStore  # noqa: E402
from cluster.settings import ClusterSettings  # noqa: E402
from cluster.versions import RedisVersionStore  # noqa: E402
from coordinator.ingress import Coordinator, TurnHandle  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_stats(pid: int) -> tuple[int, float, float]:
    """(threads, RSS MiB, CPU seconds) of a process, from /proc."""
    threads = rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            threads = int(line.split()[1])
        elif line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return threads, rss / 1024, cpu


class Sampler:
    """Peak threads and RSS of a process, sampled every 50 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_threads = 0
        self.peak_rss = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            try:
                threads, rss, _ = proc_stats(self.pid)
            except OSError:
                return
            self.peak_threads = max(self.peak_threads, threads)
            self.peak_rss = max(self.peak_rss, rss)


def burst(
    coord: Coordinator, sessions: list[str], text: str, timeout: float
) -> tuple[int, int, float]:
    """Submit one message per session at once; (answered ok, failed, seconds to the last answer)."""
    started = time.monotonic()
    handles: list[TurnHandle] = []
    failed = 0
    for session in sessions:
        try:
            handles.append(coord.submit_async(session, text))
        except AgentClusterError:
            failed += 1
    ok = 0

    def wait(handle: TurnHandle) -> bool:
        try:
            handle.result(timeout=max(1.0, timeout - (time.monotonic() - started)))
            return True
        except AgentClusterError:
            return False

    with ThreadPoolExecutor(32) as pool:
        for answered in pool.map(wait, handles):
            ok += answered
            failed += not answered
    return ok, failed, time.monotonic() - started


def sustain(
    coord: Coordinator,
    sessions: list[str],
    seconds: float,
    timeout: float,
    probe: Callable[[], tuple[Any, ...]],
    warmup: float,
) -> tuple[int, int, float, tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """Closed loop: each session sends its next message when the last was answered.

    Returns (turns answered within the window, failures, window seconds, the
    ``probe()`` readings at the window's start and end).
    """
    start = time.monotonic() + warmup  # every session has sent and been answered by then
    end = start + seconds
    readings: list[tuple[Any, ...]] = []
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0}

    def loop(session: str) -> None:
        turn = 0
        while time.monotonic() < end:
            turn += 1
            try:
                coord.submit(session, f"message {turn}", timeout=timeout)
                ok = True
            except AgentClusterError:
                ok = False
            now = time.monotonic()
            with lock:
                if not ok:
                    counts["failed"] += 1
                elif start <= now <= end:
                    counts["ok"] += 1

    def read_at(when: float) -> None:
        time.sleep(max(0.0, when - time.monotonic()))
        readings.append(probe())

    with ThreadPoolExecutor(len(sessions) + 2) as pool:
        pool.submit(read_at, start)
        pool.submit(read_at, end)
        list(pool.map(loop, sessions))
    return counts["ok"], counts["failed"], seconds, (readings[0], readings[1])


def settle(pid: int, idle_threads: int, limit: float) -> float | None:
    """Seconds until the worker is back to ``idle_threads`` threads (None: not within ``limit``)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if proc_stats(pid)[0] <= idle_threads:
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def start_worker(
    url: str, namespace: str, concurrency: int, tmp: Path, metrics_port: int
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench", "AGENT_CLUSTER_HOME": str(tmp / "home")}
    log = (tmp / f"{namespace}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "worker", "--redis-url", url,
         "--namespace", namespace, "--id", "w1", "--concurrency", str(concurrency),
         "--cache-size", str(max(128, concurrency)), "--metrics-port", str(metrics_port)],
        env=env, stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip


def worker_round_trips(port: int) -> float | None:
    """The worker's Redis round trips so far (None: it does not count them)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
    except OSError:
        return None
    for line in body.splitlines():
        if line.startswith("agent_cluster_redis_round_trips_total "):
            return float(line.split()[1])
    return None


def wait_live(url: str, namespace: str) -> None:
    membership = RedisMembership(connect(url), Keyspace(namespace), heartbeat_ttl=5.0)
    deadline = time.monotonic() + 30
    while not membership.is_alive("w1"):
        if time.monotonic() > deadline:
            raise SystemExit(f"worker of {namespace} did not register")
        time.sleep(0.05)


def bare_sdk_cpu(base_url: str, request: dict[str, Any], calls: int, threads: int) -> float:
    """CPU seconds of this process per bare SDK call (one shared client, ``threads`` at once)."""
    client = openai.OpenAI(api_key="sk-bench", base_url=base_url, max_retries=0, timeout=120)

    def call(_: int) -> None:
        client.chat.completions.create(**request)

    call(0)  # warm the connection pool and the SDK's lazy imports
    before = time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(call, range(calls)))
    spent = time.process_time() - before
    client.close()
    return spent / calls


def cached_request(url: str, namespace: str, session: str) -> dict[str, Any]:
    """The chat completions request a cached turn of ``session`` sends (frozen prompt + history)."""
    snapshot = RedisSessionStore(connect(url), Keyspace(namespace)).load(session)
    assert snapshot.frozen_prompt is not None, "the session has no frozen prompt"
    messages = [*snapshot.history, {"role": "user", "content": "and again"}]
    return {
        "model": "sim-gpt",
        "messages": to_openai_messages(snapshot.frozen_prompt.system_prompt, messages),
        "tools": to_openai_tools(snapshot.frozen_prompt.tool_schemas),
        "max_completion_tokens": 1024,
        "prompt_cache_key": session,
    }


def run_level(
    url: str, sim_url: str, concurrency: int, args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    namespace = f"load{concurrency}-{uuid.uuid4().hex[:6]}"
    client = connect(url)
    RedisVersionStore(client, Keyspace(namespace), max_config_bytes=1 << 20).publish_config(
        use_simulator(sim_url + "/v1")
    )
    metrics_port = free_port()
    worker = start_worker(url, namespace, concurrency, tmp, metrics_port)
    try:
        wait_live(url, namespace)
        time.sleep(5.0)  # past start-up (script loads, the first health records): steady idle
        idle_threads, idle_rss, _ = proc_stats(worker.pid)
        idle_start = worker_round_trips(metrics_port)
        time.sleep(args.idle)
        idle_end = worker_round_trips(metrics_port)
        idle_rate = (
            None if idle_start is None or idle_end is None else (idle_end - idle_start) / args.idle
        )
        settings = ClusterSettings(redis_url=url, namespace=namespace, turn_timeout=args.timeout)
        caller_trips = [0]

        def count() -> None:
            caller_trips[0] += 1

        caller = connect(url, pool_size=concurrency + 16)
        waiter = blocking_client(url, block_seconds=args.timeout, pool_size=concurrency + 16)
        count_round_trips(caller, count)  # before their first use: every request is counted
        count_round_trips(waiter, count)
        coord = Coordinator(settings=settings, client=caller, blocking=waiter)
        sessions = [f"s{concurrency}-{i}" for i in range(concurrency)]
        with Sampler(worker.pid) as new_peak:
            ok_new, failed_new, new_seconds = burst(coord, sessions, "hello", args.timeout)
        with Sampler(worker.pid) as burst_peak:
            ok_burst, failed_burst, burst_seconds = burst(coord, sessions, "again", args.timeout)
        with Sampler(worker.pid) as cached_peak:
            ok_cached, failed_cached, cached_seconds, window = sustain(
                coord, sessions, args.sustain, args.timeout, lambda: (
                    proc_stats(worker.pid)[2], worker_round_trips(metrics_port), caller_trips[0]
                ), warmup=args.ttft + 1.0,
            )  # fmt: skip
        _, rss_after, _ = proc_stats(worker.pid)
        (cpu_before, trips_before, caller_before), (cpu_after, trips_after, caller_after) = window
        settled = settle(worker.pid, idle_threads, args.settle)
        if settled is None and args.dump_threads:
            subprocess.run(
                [str(Path(sys.executable).with_name("py-spy")), "dump", "-p", str(worker.pid)]
            )
        coord.close()
        return {
            "concurrency": concurrency,
            "idle_threads": idle_threads,
            "idle_rss": idle_rss,
            "failed": failed_new + failed_burst + failed_cached,
            "ok": ok_new + ok_burst + ok_cached,
            "new_tps": ok_new / new_seconds,
            "burst_tps": ok_burst / burst_seconds,
            "cached_tps": ok_cached / cached_seconds,
            "cached_cpu_ms": 1000 * (cpu_after - cpu_before) / max(1, ok_cached),
            "peak_threads": max(p.peak_threads for p in (new_peak, burst_peak, cached_peak)),
            "peak_rss": max(*(p.peak_rss for p in (new_peak, burst_peak, cached_peak)), rss_after),
            "settled": settled,
            "idle_rate": idle_rate,
            "caller_trips": (caller_after - caller_before) / max(1, ok_cached),
            "worker_trips": None
            if trips_before is None or trips_after is None
            else (trips_after - trips_before) / max(1, ok_cached),
            "request": cached_request(url, namespace, sessions[0]) if ok_new else None,
        }
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def start_simulator(ttft: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "simulate-llm", "--port", str(port),
         "--ttft", str(ttft)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.readline()  # "provider simulator listening on ..."
    return proc, f"http://127.0.0.1:{port}"


def table(rows: list[dict[str, Any]], sdk_ms: Callable[[int], float], ttft: float) -> None:
    print(
        "| concurrency | failed | new turns/s (burst) | cached turns/s (burst) | "
        "cached turns/s (closed loop) | ceiling C/ttft | "
        "CPU/cached turn | bare SDK CPU/call | ratio | peak threads | idle threads | "
        "back to idle | peak RSS MB | round trips/cached turn: caller | worker | "
        "idle worker req/s |"
    )
    print("|" + "---|" * 16)
    for r in rows:
        floor = sdk_ms(r["concurrency"])
        back = "no" if r["settled"] is None else f"{r['settled']:.1f} s"
        print(
            f"| {r['concurrency']} | {r['failed']} | {r['new_tps']:.1f} | {r['burst_tps']:.1f} | "
            f"{r['cached_tps']:.1f} | "
            f"{r['concurrency'] / ttft:.0f} | {r['cached_cpu_ms']:.2f} ms | {floor:.2f} ms | "
            f"{r['cached_cpu_ms'] / floor:.2f}x | {r['peak_threads']} | {r['idle_threads']} | "
            f"{back} | {r['peak_rss']:.0f} | {r['caller_trips']:.2f} | "
            f"{_maybe(r['worker_trips'])} | {_maybe(r['idle_rate'])} |"
        )


def _maybe(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="32,128,512,1024")
    parser.add_argument("--ttft", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--settle", type=float, default=15.0)
    parser.add_argument(
        "--sustain", type=float, default=12.0, help="seconds of cached-turn traffic"
    )
    parser.add_argument(
        "--dump-threads", action="store_true", help="py-spy dump a worker that kept threads"
    )
    parser.add_argument(
        "--idle", type=float, default=10.0, help="seconds the idle worker is watched"
    )
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    with tempfile.TemporaryDirectory() as tmp_name, redis_server(Path(tmp_name)) as url:
        tmp = Path(tmp_name)
        sim, sim_url = start_simulator(args.ttft)
        try:
            rows = []
            for level in levels:
                print(
                    f"concurrency {level}: bursts of {level} new, then {level} cached turns ...",
                    flush=True,
                )
                rows.append(run_level(url, sim_url, level, args, tmp))
            floors: dict[int, float] = {}
            for row in rows:
                if row["request"] is None:
                    continue
                print(
                    f"bare SDK: {row['concurrency']} calls on {row['concurrency']} threads ...",
                    flush=True,
                )
                floors[row["concurrency"]] = 1000 * bare_sdk_cpu(
                    sim_url + "/v1", row["request"], row["concurrency"], row["concurrency"]
                )
        finally:
            sim.terminate()
            sim.wait()
    print()
    table(rows, lambda c: floors.get(c, float("nan")), args.ttft)


if __name__ == "__main__":
    main()
