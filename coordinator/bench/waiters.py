"""Figure 4, gateway waiting-caller capacity: how many callers one gateway process holds.

A gateway (``agent-cluster serve``) and 2 worker processes (each running up to
500 turns at once; more callers wait in its queue) on a private Redis, the
provider simulator making every model call wait ``ttft`` seconds before its
first token (:func:`waiting_gateway`). :func:`run_level` then starts client
processes (asyncio, raw HTTP/1.1 on loopback) that send N callers together, a
third each of JSON, native SSE and OpenAI streams, and read every answer. While
they wait it samples the callers held (sent, not answered), the Redis
connections the gateway process holds (``CLIENT LIST`` entries whose port is
one of the gateway's sockets), the gateway's RSS and CPU. Three seconds after
the last caller was sent and admitted (``/readyz`` counts them all: the
arrivals and the turn starts are over, the callers wait on the model) it
takes the gateway's RSS growth per caller held, its CPU use over the next
2 s, and times a newcomer's quick message (``/stop`` to a fresh session:
answered by the gateway without a model call, median of 20) against the same
measure on the idle gateway just before: the baseline of the same run.

``agent-cluster bench`` runs one level (1,000 callers quick, 5,000 ``--full``);
``benchmarks/bench_waiters.py`` runs several and can trace the gateway's memory.
Loopback only; nothing is left running.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from agent.simulator import ProviderSimulator
from cluster.keys import Keyspace
from cluster.versions import RedisVersionStore
from coordinator.bench.infra import STARTUP_TIMEOUT, free_port

__all__ = ["WaitingLevel", "measure_waiting", "run_level", "waiting_gateway"]

NAMESPACE = "ctlwait"
TTFT = 12.0
"""Seconds every model call waits before its first token: longer than sending and
admitting the callers, settling and the loaded newcomer's samples, so they are all still
waiting when the figures are taken."""
CLIENTS = 3
LEVEL_BOUND = 150.0

# Seconds after the last caller was admitted before the held figures are taken (the
# workers' turn starts are over: the callers wait on the model), and the window over
# which the gateway's CPU is measured then.
SETTLE = 3.0
HOLD_WINDOW = 2.0
_CLK = os.sysconf("SC_CLK_TCK")


def _request(port: int, kind: str, n: int, tag: str) -> bytes:
    session = f"{tag}-{n}"
    if kind == "openai":
        path = "/v1/chat/completions"
        body = (
            '{"model":"m","stream":true,"messages":[{"role":"user","content":"hello"}],'
            f'"user":"{session}"}}'
        )
    else:
        path = f"/v1/sessions/{session}/messages"
        body = f'{{"text":"hello","stream":{"true" if kind == "sse" else "false"}}}'
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
    ).encode()


async def _caller(port: int, kind: str, n: int, tag: str, held: Any, sent: Any) -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(_request(port, kind, n, tag))
        await writer.drain()
        with held.get_lock():
            held.value += 1
        with sent.get_lock():
            sent.value += 1
        data = await reader.read()
    except OSError:
        return False
    finally:
        writer.close()
    with held.get_lock():
        held.value -= 1
    ok = data.startswith(b"HTTP/1.1 200")
    if kind == "json":
        return ok and b'"text"' in data
    if kind == "sse":
        return ok and b"event: final" in data
    return ok and b"[DONE]" in data


def _client(
    port: int, first: int, count: int, tag: str, counters: tuple[Any, Any], out: Any, limit: float
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    kinds = ("json", "sse", "openai")

    async def run() -> list[bool]:
        tasks = [
            asyncio.create_task(_caller(port, kinds[n % 3], n, tag, *counters))
            for n in range(first, first + count)
        ]
        done, pending = await asyncio.wait(tasks, timeout=limit)
        for task in pending:
            task.cancel()
        return [t.result() for t in done if not t.cancelled() and t.exception() is None]

    results = asyncio.run(run())
    out.put((sum(results), count - sum(results)))


def _proc_stats(pid: int) -> tuple[float, float]:
    """RSS in MiB and CPU seconds of a process."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return rss / 1024, (int(fields[11]) + int(fields[12])) / _CLK


def _socket_ports(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[9] in inodes:
                    ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def _redis_connections(client: redis.Redis, pid: int) -> int:
    ports = _socket_ports(pid)
    return sum(1 for c in client.client_list() if int(c["addr"].rsplit(":", 1)[1]) in ports)


def _newcomer(http: httpx.Client, samples: int = 20) -> float:
    """Median milliseconds of a newcomer's quick message, ``samples`` of them 50 ms apart."""
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        http.post(f"/v1/sessions/new-{uuid.uuid4().hex[:8]}/messages", json={"text": "/stop"})
        times.append(time.perf_counter() - started)
        time.sleep(0.05)
    return statistics.median(times) * 1000


def _admitted(http: httpx.Client) -> int:
    """The callers the gateway holds, by its own count (``/readyz``)."""
    try:
        return int(http.get("/readyz").json().get("waiting", 0))
    except (httpx.HTTPError, ValueError):
        return 0


def _memory_trace(gw_pid: int, out: Path) -> list[tuple[int, int, str]]:
    """The traced gateway's allocations now: (bytes, blocks, where), lines then packages."""
    out.unlink(missing_ok=True)
    os.kill(gw_pid, signal.SIGUSR1)
    deadline = time.monotonic() + 60
    while not (out.exists() and out.read_text().endswith("\n")):
        assert time.monotonic() < deadline, "the traced gateway wrote no snapshot"
        time.sleep(0.2)
    time.sleep(0.5)  # let it finish writing
    rows = []
    for line in out.read_text().splitlines():
        if line == "--":
            rows.append((-1, -1, "--"))
            continue
        size, count, where = line.split("\t", 2)
        rows.append((int(size), int(count), where))
    return rows


@dataclass(frozen=True)
class WaitingLevel:
    """What one gateway did with ``callers`` callers sent at once (see the module docstring).

    Attributes:
        callers: Callers sent.
        held: Most callers held at once (sent, not yet answered).
        answers: Callers answered in full (200 and the whole reply).
        errors: Callers refused, cut off or not answered within the level's bound.
        redis_conns: Most Redis connections the gateway process held meanwhile.
        rss_mib: The gateway's peak RSS.
        cpu_s: The gateway's CPU seconds over the level.
        kib_per_caller: The gateway's RSS growth per caller held, once all were in.
        settled_held: Callers held when that was measured.
        holding_cpu: The gateway's CPU share while it only held them (1.0: one core).
        newcomer_idle_ms: A newcomer's quick message on the idle gateway (median).
        newcomer_loaded_ms: The same while the callers wait.
        seconds: Wall time of the level.
        trace: Traced memory per caller (where, KiB, blocks), when the gateway was traced.
    """

    callers: int
    held: int
    answers: int
    errors: int
    redis_conns: int
    rss_mib: float
    cpu_s: float
    kib_per_caller: float
    settled_held: int
    holding_cpu: float
    newcomer_idle_ms: float
    newcomer_loaded_ms: float
    seconds: float
    trace: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def newcomer_ratio(self) -> float:
        """The newcomer's loaded latency over its idle one (nan without an idle figure)."""
        if not self.newcomer_idle_ms:
            return float("nan")
        return self.newcomer_loaded_ms / self.newcomer_idle_ms

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the JSON results (the trace left out)."""
        return {k: v for k, v in self.__dict__.items() if k != "trace"}


def start_workers(
    common: list[str], concurrency: str, env: dict[str, str], logs: Path, prefix: str = ""
) -> list[subprocess.Popen[bytes]]:
    """The two worker processes (w1, w2) of a waiting-caller bench, logging to
    ``logs / f"{prefix}{id}.log"``."""
    procs = []
    for worker in ("w1", "w2"):
        with (logs / f"{prefix}{worker}.log").open("ab") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "coordinator.cli", "worker", "--id", worker]
                    + ["--concurrency", concurrency, *common],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
    return procs


@contextmanager
def waiting_gateway(
    *,
    redis_url: str,
    namespace: str,
    home: Path,
    endpoints: str,
    callers: int,
    turn_timeout: float,
    entry: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[int, int]]:
    """Two workers and one gateway (``agent-cluster serve --anonymous``) on ``redis_url``;
    yields the gateway's port and pid once it sees both workers live.

    Args:
        redis_url: A private Redis (its ``maxclients`` is raised for the callers).
        namespace: Keyspace (its config must already name the simulator's endpoint).
        home: ``AGENT_CLUSTER_HOME`` of every process; their logs go there too.
        endpoints: ``AGENT_CLUSTER_ENDPOINTS`` (the simulator's).
        callers: The most callers that will be sent at once (the gateway is sized for them).
        turn_timeout: The gateway's ``--turn-timeout``.
        entry: What runs the gateway after the Python executable (default
            ``-m coordinator.cli``; ``benchmarks/traced_gateway.py`` traces its memory).
        env: Extra environment of the gateway (the traced gateway's output file).
    """
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    base = {
        **os.environ,
        "OPENAI_API_KEY": "sk-bench",
        "AGENT_CLUSTER_HOME": str(home),
        "AGENT_CLUSTER_SANDBOX": "auto",
        "AGENT_CLUSTER_ENDPOINTS": endpoints,
        "AGENT_CLUSTER_GATEWAY_MAX_WAITING": str(callers + 100),
    }
    client = redis.Redis.from_url(redis_url)
    client.config_set("maxclients", 19000)
    client.close()
    common = ["--redis-url", redis_url, "--namespace", namespace]
    # Past this many turns at once per worker, callers wait in the queue (still waiting).
    concurrency = str(min(500, callers // 2 + 50))
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs += start_workers(common, concurrency, base, home, f"{namespace}-")
        with (home / f"{namespace}-gateway.log").open("ab") as log:
            gateway = subprocess.Popen(
                [sys.executable, *(entry or ["-m", "coordinator.cli"]), "serve", "--anonymous"]
                + ["--port", str(port), "--turn-timeout", str(turn_timeout), *common],
                env={**base, **(env or {})},
                stdout=subprocess.DEVNULL,
                stderr=log,
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard)),
            )
        procs.append(gateway)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).json()
                if ready.get("live_workers", 0) >= 2:
                    break
            except (httpx.TransportError, ValueError):
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"the gateway or its workers did not start; see {home}")
            time.sleep(0.2)
        yield port, gateway.pid
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Callers:
    """``n`` callers sent at once from ``clients`` client processes (:func:`_client`).

    ``held`` counts the callers sent and not yet answered, ``sent`` those sent;
    :meth:`outcome` collects the answers and errors once the processes end.
    """

    def __init__(self, n: int, port: int, clients: int, seconds: float) -> None:
        """Start the client processes now; each gives up after ``seconds``."""
        ctx = mp.get_context("spawn")
        self.held = ctx.Value("i", 0)
        self.sent = ctx.Value("i", 0)
        self._out = ctx.Queue()
        tag = f"l{n}-{uuid.uuid4().hex[:6]}"
        share = -(-n // clients)
        self._procs = [
            ctx.Process(
                target=_client,
                args=(
                    port,
                    i * share,
                    min(share, n - i * share),
                    tag,
                    (self.held, self.sent),
                    self._out,
                    seconds,
                ),
            )  # fmt: skip
            for i in range(clients)
            if i * share < n
        ]
        self.started = time.monotonic()
        for proc in self._procs:
            proc.start()

    def running(self, bound: float) -> bool:
        """Whether a client process still runs, within ``bound`` seconds of the start."""
        return any(p.is_alive() for p in self._procs) and time.monotonic() - self.started < bound

    def outcome(self) -> tuple[int, int]:
        """``(answers, errors)`` over every client process (waits for their reports)."""
        answers = errors = 0
        for _ in self._procs:
            ok, bad = self._out.get(timeout=30)
            answers, errors = answers + ok, errors + bad
        for proc in self._procs:
            proc.join(timeout=30)
        return answers, errors


def run_level(
    n: int,
    port: int,
    gw_pid: int,
    client: redis.Redis,
    clients: int,
    seconds: float,
    trace: Path | None = None,
) -> WaitingLevel:
    """Send ``n`` callers at once from ``clients`` processes and measure the gateway
    (see the module docstring); bounded by ``seconds`` (then unanswered callers count
    as errors). ``trace``: the traced gateway's output file."""
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    idle_ms = _newcomer(http)
    rss0, cpu0 = _proc_stats(gw_pid)
    traced_before = _memory_trace(gw_pid, trace) if trace is not None else []
    traced_loaded: list[tuple[int, int, str]] = []
    callers = Callers(n, port, clients, seconds)
    held, sent, started = callers.held, callers.sent, callers.started
    peak_held, peak_conns, peak_rss, loaded_ms = 0, 0, rss0, 0.0
    all_sent_at = settled_held = holding_cpu = 0.0
    settled_rss = rss0
    while callers.running(seconds + 10):
        peak_held = max(peak_held, held.value)
        peak_conns = max(peak_conns, _redis_connections(client, gw_pid))
        peak_rss = max(peak_rss, _proc_stats(gw_pid)[0])
        if not all_sent_at and sent.value >= n and _admitted(http) >= held.value:
            all_sent_at = time.monotonic()  # every caller sent and admitted by the gateway
        # Once every caller is in and the gateway settled: memory, its CPU while it
        # only holds them, the newcomer, the trace.
        if all_sent_at and not loaded_ms and time.monotonic() - all_sent_at >= SETTLE:
            settled_held, (settled_rss, held_cpu0) = held.value, _proc_stats(gw_pid)
            time.sleep(HOLD_WINDOW)
            holding_cpu = (_proc_stats(gw_pid)[1] - held_cpu0) / HOLD_WINDOW
            loaded_ms = _newcomer(http)
            if trace is not None:
                traced_loaded = _memory_trace(gw_pid, trace)
        time.sleep(0.2)
    answers, errors = callers.outcome()
    _rss, cpu1 = _proc_stats(gw_pid)
    http.close()
    return WaitingLevel(
        callers=n,
        held=peak_held,
        answers=answers,
        errors=errors,
        redis_conns=peak_conns,
        rss_mib=peak_rss,
        cpu_s=cpu1 - cpu0,
        kib_per_caller=(settled_rss - rss0) * 1024 / max(1, settled_held),
        settled_held=int(settled_held),
        holding_cpu=holding_cpu,
        newcomer_idle_ms=idle_ms,
        newcomer_loaded_ms=loaded_ms,
        seconds=time.monotonic() - started,
        trace=_per_caller(traced_before, traced_loaded, int(settled_held)),
    )


def _per_caller(
    before: list[tuple[int, int, str]], loaded: list[tuple[int, int, str]], held: int
) -> list[tuple[str, float, float]]:
    """Growth of each traced package and line while the callers waited: (where, KiB, blocks)."""
    if not loaded or not held:
        return []
    base = {where: (size, count) for size, count, where in before}
    grown = []
    for size, count, where in loaded:
        if where == "--":
            grown.append(("--", 0.0, 0.0))
            continue
        size0, count0 = base.get(where, (0, 0))
        grown.append((where, (size - size0) / 1024 / held, (count - count0) / held))
    return grown


def measure_waiting(callers: int, *, redis_url: str, home: Path) -> WaitingLevel:
    """Figure 4's waiting-caller capacity: ``callers`` callers sent at once to one gateway
    on the bench Redis, against the same gateway idle just before."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    client = redis.Redis.from_url(redis_url, socket_timeout=60)
    try:
        with ProviderSimulator(ttft=TTFT) as sim:
            RedisVersionStore(client, Keyspace(NAMESPACE)).publish_config(
                {"model": {"default": "gpt-5", "endpoint": "bench-waiting"}}, author="bench"
            )
            endpoints = json.dumps(
                {"bench-waiting": {"provider": "openai", "base_url": sim.openai_base_url}}
            )
            with waiting_gateway(
                redis_url=redis_url,
                namespace=NAMESPACE,
                home=home,
                endpoints=endpoints,
                callers=callers,
                turn_timeout=LEVEL_BOUND,
            ) as (port, gw_pid):
                return run_level(callers, port, gw_pid, client, CLIENTS, LEVEL_BOUND)
    finally:
        client.close()
