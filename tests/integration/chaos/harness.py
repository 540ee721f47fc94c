"""The chaos harness: a seeded plan, the processes it acts on, and one whole run.

* :func:`plan_chaos` is pure: the same seed always gives the same events
  (kill -9, SIGSTOP/SIGCONT, drain by SIGTERM + a replacement with a fresh id,
  a new worker, a Redis restart with AOF, a config push) at seeded moments
  about every ``interval`` seconds, never leaving fewer than ``min_live`` live
  workers (a paused or draining worker does not count as live).
* :class:`RedisProcess` runs a private ``redis-server`` on a free loopback port
  (never 6379) with ``--appendonly yes --appendfsync always``; a restart stops
  it with SIGTERM and starts it again on the same port and ``--dir``, so the AOF
  brings every acknowledged write back.
* :class:`WorkerPool` runs ``python -m coordinator.cli worker`` processes with short
  heartbeat and lease settings, one log file each.
* :func:`run_chaos` starts everything, drives :mod:`traffic` while a thread
  plays the plan, stops every process (also on failure), runs
  :mod:`checks` and returns a :class:`ChaosResult` with the table to print.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from cluster.keys import Keyspace
from cluster.membership import RedisMembership
from cluster.settings import ClusterSettings
from cluster.versions import RedisVersionStore
from tests.integration.chaos import checks
from tests.integration.chaos.bursts import BurstTraffic
from tests.integration.chaos.traffic import MessageRecord, Traffic, TrafficConfig

__all__ = [
    "ACTIONS",
    "ChaosConfig",
    "ChaosResult",
    "Event",
    "RedisProcess",
    "WorkerPool",
    "plan_chaos",
    "run_chaos",
]

# -- the plan (pure) ------------------------------------------------------------

KILL, PAUSE, RESUME, DRAIN, START, REDIS_RESTART, CONFIG = (
    "kill",
    "pause",
    "resume",
    "drain",
    "start",
    "redis_restart",
    "config",
)
ACTIONS = (KILL, PAUSE, RESUME, DRAIN, START, REDIS_RESTART, CONFIG)
# Actions the planner picks (RESUME follows a PAUSE; DRAIN brings its own START).
_CHOSEN = (KILL, PAUSE, DRAIN, START, REDIS_RESTART, CONFIG)
_WEIGHTS = {KILL: 3.0, PAUSE: 2.0, DRAIN: 2.0, START: 2.0, REDIS_RESTART: 1.5, CONFIG: 2.0}


@dataclass(frozen=True, order=True)
class Event:
    """One chaos action.

    Attributes:
        at: Seconds after the traffic started.
        action: One of :data:`ACTIONS`.
        target: A worker id, ``"redis"`` or ``"config"``.
        param: Seconds of Redis downtime (``redis_restart``), seconds of the
            pause (``pause``), or the config push number (``config``).
    """

    at: float
    action: str
    target: str
    param: float = 0.0

    def describe(self) -> str:
        if self.action == PAUSE:
            return f"pause {self.target} (SIGSTOP) for {self.param:g}s"
        if self.action == REDIS_RESTART:
            return f"restart redis-server ({self.param:g}s down)"
        if self.action == CONFIG:
            return f"push config #{int(self.param)}"
        return f"{self.action} {self.target}"


@dataclass
class _PlanState:
    live: list[str]
    paused: dict[str, float] = field(default_factory=dict)
    next_id: int = 0

    def fresh_id(self) -> str:
        worker = f"w{self.next_id}"
        self.next_id += 1
        return worker


def plan_chaos(
    seed: int,
    duration: float,
    n_workers: int,
    *,
    interval: float = 5.0,
    min_live: int = 2,
    max_workers: int | None = None,
    pause_seconds: float = 8.0,
    quiet_tail: float = 5.0,
) -> list[Event]:
    """The seeded chaos plan of a run (pure: same arguments, same events).

    The first event comes about ``interval`` seconds in, then one every
    ``interval`` seconds give or take 40%, until ``duration - quiet_tail``. The
    first picks go through every kind of action once (in a seeded order), so a
    short run still sees each; later picks are weighted at random. A worker is
    killed, paused or drained only while more than ``min_live`` workers are live,
    and a drained worker is replaced at once by a new one with a fresh id.

    Args:
        seed: The seed.
        duration: Seconds of traffic.
        n_workers: Workers at the start, ids ``w0 .. w{n-1}``.
        interval: Mean seconds between two events.
        min_live: Fewest live workers the plan may leave.
        max_workers: Most workers running at once (default ``n_workers + 2``).
        pause_seconds: How long a SIGSTOP lasts before its SIGCONT.
        quiet_tail: Seconds at the end without new events.

    Returns:
        The events in time order.
    """
    if n_workers < min_live:
        raise ValueError(f"n_workers={n_workers} is below min_live={min_live}")
    rng = random.Random(seed)
    cap = max_workers if max_workers is not None else n_workers + 2
    state = _PlanState(live=[f"w{i}" for i in range(n_workers)], next_id=n_workers)
    todo = rng.sample(_CHOSEN, len(_CHOSEN))
    events: list[Event] = []
    configs = 0
    at = interval * rng.uniform(0.6, 1.4)
    while at < duration - quiet_tail:
        for worker, until in sorted(state.paused.items()):
            if until <= at:
                del state.paused[worker]
                state.live.append(worker)
        allowed = [
            a for a in _CHOSEN if _feasible(a, at, state, cap, min_live, duration, pause_seconds)
        ]
        fresh = [a for a in todo if a in allowed]
        if fresh:
            action = fresh[0]
            todo.remove(action)
        else:
            action = rng.choices(allowed, weights=[_WEIGHTS[a] for a in allowed])[0]
        if action == CONFIG:
            configs += 1
        events.extend(_apply(action, round(at, 2), state, rng, pause_seconds, configs))
        at += interval * rng.uniform(0.6, 1.4)
    return sorted(events)


def _feasible(
    action: str,
    at: float,
    state: _PlanState,
    cap: int,
    min_live: int,
    duration: float,
    pause_seconds: float,
) -> bool:
    running = len(state.live) + len(state.paused)
    if action in (KILL, DRAIN):
        return len(state.live) > min_live
    if action == PAUSE:
        return len(state.live) > min_live and at + pause_seconds < duration - 1.0
    if action == START:
        return running < cap
    return True


def _apply(
    action: str, at: float, state: _PlanState, rng: random.Random, pause: float, configs: int
) -> list[Event]:
    if action == START:
        worker = state.fresh_id()
        state.live.append(worker)
        return [Event(at, START, worker)]
    if action == REDIS_RESTART:
        return [Event(at, REDIS_RESTART, "redis", round(rng.uniform(0.5, 2.0), 2))]
    if action == CONFIG:
        return [Event(at, CONFIG, "config", configs)]
    target = rng.choice(sorted(state.live))
    state.live.remove(target)
    if action == KILL:
        return [Event(at, KILL, target)]
    if action == PAUSE:
        state.paused[target] = at + pause
        return [Event(at, PAUSE, target, pause), Event(round(at + pause, 2), RESUME, target)]
    replacement = state.fresh_id()
    state.live.append(replacement)
    return [Event(at, DRAIN, target), Event(at, START, replacement)]


def config_document(number: int) -> dict[str, object]:
    """The config pushed by push number ``number`` (odd ones also bust cached agents)."""
    doc: dict[str, object] = {"agent": {"max_iterations": 5 + number}}
    if number % 2:
        doc["model"] = {"max_tokens": 1024 + number}
    return doc


# -- processes --------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (as tests/conftest.py)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """A private redis-server with AOF (``appendfsync always``), restartable on its port."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs: float) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)  # type: ignore[arg-type]

    def start(self, timeout: float = 15.0) -> None:
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory),
            "--notify-keyspace-events", "Ex", "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        probe = self.client(socket_timeout=1)
        try:
            while True:
                try:
                    if probe.ping():
                        return
                except redis.RedisError:  # refused, or LOADING the AOF
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server on port {self.port} did not start; see "
                        f"{self.directory / 'redis.log'}"
                    )
                time.sleep(0.02)
        finally:
            probe.close()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (redis fsyncs the AOF and exits), SIGKILL if it does not; the exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.process = None
        return proc.returncode

    def restart(self, downtime: float) -> None:
        self.stop()
        time.sleep(downtime)
        self.start()
        self.restarts += 1


@dataclass
class WorkerProc:
    """One worker process and what the harness did to it."""

    worker_id: str
    process: subprocess.Popen[bytes]
    log: Path
    started: float
    state: str = "running"  # running | paused | killed | draining | exited
    state_at: float = 0.0
    exit_code: int | None = None
    exited_at: float | None = None
    drain_started: float | None = None


class WorkerPool:
    """Worker processes of one namespace; every id is used once."""

    def __init__(
        self,
        redis_url: str,
        namespace: str,
        directory: Path,
        clock: Callable[[], float],
        *,
        env: dict[str, str],
        concurrency: int = 32,
        redis_urls: dict[str, str] | None = None,
    ) -> None:
        """``redis_urls`` gives some workers a URL of their own (e.g. through a proxy)."""
        self.redis_url = redis_url
        self.redis_urls = dict(redis_urls or {})
        self.namespace = namespace
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.env = env
        self.concurrency = concurrency
        self.workers: dict[str, WorkerProc] = {}
        self._lock = threading.Lock()
        self._watchers: list[threading.Thread] = []

    def start(self, worker_id: str) -> WorkerProc:
        if worker_id in self.workers:
            raise ValueError(f"worker id {worker_id} was used already")
        log = self.directory / f"{worker_id}.log"
        cmd = [
            sys.executable, "-m", "coordinator.cli", "worker",
            "--redis-url", self.redis_urls.get(worker_id, self.redis_url),
            "--namespace", self.namespace, "--id", worker_id,
            "--concurrency", str(self.concurrency),
        ]  # fmt: skip
        with log.open("ab") as sink:
            proc = subprocess.Popen(
                cmd, env=self.env, stdout=sink, stderr=subprocess.STDOUT, cwd=_repo_root()
            )
        worker = WorkerProc(worker_id, proc, log, started=self.clock())
        with self._lock:
            self.workers[worker_id] = worker
        watcher = threading.Thread(target=self._watch, args=(worker,), name=f"watch-{worker_id}")
        watcher.start()
        self._watchers.append(watcher)
        return worker

    def _watch(self, worker: WorkerProc) -> None:
        code = worker.process.wait()
        with self._lock:
            worker.exit_code = code
            worker.exited_at = self.clock()
            after = {"draining": "drained", "stopping": "alive-to-end", "killed": "killed"}
            worker.state = after.get(worker.state, "exited")
            worker.state_at = worker.exited_at

    def _set(self, worker_id: str, state: str) -> WorkerProc:
        worker = self.workers[worker_id]
        with self._lock:
            worker.state, worker.state_at = state, self.clock()
        return worker

    def kill(self, worker_id: str) -> None:
        worker = self._set(worker_id, "killed")
        worker.process.send_signal(signal.SIGKILL)

    def pause(self, worker_id: str) -> None:
        self._set(worker_id, "paused").process.send_signal(signal.SIGSTOP)

    def resume(self, worker_id: str) -> None:
        worker = self.workers[worker_id]
        worker.process.send_signal(signal.SIGCONT)
        if worker.state == "paused":
            self._set(worker_id, "running")

    def drain(self, worker_id: str) -> None:
        worker = self._set(worker_id, "draining")
        worker.drain_started = worker.state_at
        worker.process.send_signal(signal.SIGTERM)

    def running(self) -> list[str]:
        return [w for w, p in self.workers.items() if p.state == "running"]

    def wait_registered(self, client: redis.Redis, count: int, timeout: float = 60.0) -> None:
        """Wait until ``count`` workers are active members (closes ``client`` after)."""
        try:
            membership = RedisMembership(client, Keyspace(self.namespace), heartbeat_ttl=2.0)
            deadline = time.monotonic() + timeout
            while len(membership.active_workers()) < count:
                dead = [w for w, p in self.workers.items() if p.process.poll() is not None]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"workers did not register (exited: {dead}); logs in {self.directory}"
                    )
                time.sleep(0.1)
        finally:
            client.close()

    def states(self) -> dict[str, str]:
        """Worker id -> ``state@seconds`` (for diagnosing where a message was stranded)."""
        return {w: f"{p.state}@{p.state_at:.1f}s" for w, p in self.workers.items()}

    def shutdown(self, timeout: float = 30.0) -> dict[str, int | None]:
        """SIGCONT + SIGTERM every live worker, SIGKILL what is left after ``timeout``."""
        live = [p for p in self.workers.values() if p.process.poll() is None]
        for worker in live:
            if worker.state in ("running", "paused"):
                self._set(worker.worker_id, "stopping")
            _signal(worker.process, signal.SIGCONT)
            _signal(worker.process, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[str, int | None] = {}
        for worker in live:
            try:
                codes[worker.worker_id] = worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(worker.process, signal.SIGKILL)
                worker.process.wait()
                codes[worker.worker_id] = None  # had to be killed
        for watcher in self._watchers:
            watcher.join(10)
        return codes


def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


# The workers' collect debounce (seconds): short, so a collect burst costs little time.
COLLECT_WINDOW = 0.3


def worker_env(home: Path, reply_ttl: float = 600.0) -> dict[str, str]:
    """The workers' environment: short heartbeat/lease settings, a private home.

    ``reply_ttl`` outlives the run, so a duplicate reply pushed early is still
    in its list when the checks look.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_CLUSTER_")}
    env.update(
        AGENT_CLUSTER_HEARTBEAT_TTL="2",
        AGENT_CLUSTER_HEARTBEAT_INTERVAL="0.5",
        AGENT_CLUSTER_LEASE_TTL="5",
        AGENT_CLUSTER_DRAIN_TIMEOUT="15",
        AGENT_CLUSTER_COLLECT_WINDOW=str(COLLECT_WINDOW),
        AGENT_CLUSTER_REPLY_TTL=str(max(600, int(reply_ttl))),
        AGENT_CLUSTER_HOME=str(home),
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(_repo_root()), env.get("PYTHONPATH")])),
    )
    return env


# -- the chaos player ------------------------------------------------------------------


class ChaosPlayer(threading.Thread):
    """Plays a plan's events at their times against the pool and the Redis server."""

    def __init__(
        self,
        plan: Sequence[Event],
        pool: WorkerPool,
        server: RedisProcess,
        namespace: str,
        clock: Callable[[], float],
        say: Callable[[str], None],
    ) -> None:
        super().__init__(name="chaos")
        self.plan = list(plan)
        self.pool = pool
        self.server = server
        self.namespace = namespace
        self.clock = clock
        self.say = say
        self.done: list[tuple[float, Event]] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        for event in self.plan:
            if self._halt.wait(max(0.0, event.at - self.clock())):
                return
            started = self.clock()
            try:
                self._apply(event)
            except Exception:
                self.errors.append(
                    f"{event.describe()} at {event.at}s failed:\n{traceback.format_exc()}"
                )
            self.done.append((started, event))
            self.say(
                f"[{started:7.1f}s] chaos: {event.describe()} (took {self.clock() - started:.1f}s)"
            )

    def _apply(self, event: Event) -> None:
        if event.action == KILL:
            self.pool.kill(event.target)
        elif event.action == PAUSE:
            self.pool.pause(event.target)
        elif event.action == RESUME:
            self.pool.resume(event.target)
        elif event.action == DRAIN:
            self.pool.drain(event.target)
        elif event.action == START:
            self.pool.start(event.target)
        elif event.action == REDIS_RESTART:
            self._restart_redis(event.param)
        elif event.action == CONFIG:
            self._push_config(int(event.param))

    def _restart_redis(self, downtime: float) -> None:
        sentinel, value = f"{self.namespace}:chaos:sentinel", uuid.uuid4().hex
        _with_retries(lambda c: c.set(sentinel, value), self.server)
        self.server.restart(downtime)
        got = _with_retries(lambda c: c.get(sentinel), self.server)
        if got != value.encode():
            raise RuntimeError(f"redis lost data across the restart (AOF): sentinel {got!r}")

    def _push_config(self, number: int) -> None:
        def push(client: redis.Redis) -> int:
            store = RedisVersionStore(client, Keyspace(self.namespace), max_config_bytes=1 << 20)
            return store.publish_config(config_document(number))

        _with_retries(push, self.server)


def _with_retries(action: Callable[[redis.Redis], object], server: RedisProcess) -> object:
    for attempt in range(20):
        client = server.client(socket_timeout=5)
        try:
            return action(client)
        except redis.ConnectionError:
            if attempt == 19:
                raise
            time.sleep(0.25)
        finally:
            client.close()
    raise AssertionError("unreachable")


# -- one run ------------------------------------------------------------------------------


@dataclass
class ChaosConfig:
    """One chaos run.

    Attributes:
        seed: Seeds the plan and the message texts.
        duration: Seconds of traffic (no new message is begun after it).
        workers: Workers at the start.
        sessions: Client sessions.
        workdir: Logs, the Redis AOF and the tools' home go here.
        chaos: False runs the same traffic with no event (the harness baseline).
        threads: Client threads.
        settle: Seconds after ``duration`` that clients keep waiting/resubmitting.
        attempt_timeout: Seconds without a reply before a resubmission.
        interval: Mean seconds between chaos events.
        sh_fraction: Share of messages that run ``!sh sleep S; echo ...``.
        sh_sleep: The ``S`` above.
        burst_fraction: Share of sessions whose messages come in bursts, a leader and one
            or two followers sent with ``steer`` or ``collect`` while it runs
            (:mod:`tests.integration.chaos.bursts`).
    """

    seed: int
    duration: float
    workers: int
    sessions: int
    workdir: Path
    chaos: bool = True
    threads: int = 16
    settle: float = 60.0
    attempt_timeout: float = 10.0
    interval: float = 5.0
    sh_fraction: float = 0.3
    sh_sleep: float = 0.3
    burst_fraction: float = 0.1


@dataclass
class ChaosResult:
    """What a run did and found; :meth:`report` is the printable table."""

    config: ChaosConfig
    namespace: str
    plan: list[Event]
    played: list[tuple[float, Event]]
    records: list[MessageRecord]
    checks: list[checks.Check]
    lost_details: list[str]
    lost_categories: Counter[str]
    worker_states: dict[str, str]
    final_exit_codes: dict[str, int | None]
    drain_exits: list[str]
    harness_errors: list[str]
    log_dir: Path
    elapsed: float

    @property
    def failures(self) -> list[str]:
        """Failed checks (with examples) and harness errors; empty when the run passed."""
        out = [f"harness: {e}" for e in self.harness_errors]
        for check in self.checks:
            if check.ok is False:
                more = "".join(f"\n      {x}" for x in check.examples)
                out.append(f"{check.name}: {check.value}{more}")
        return out

    def report(self) -> str:
        return format_report(self)


def run_chaos(config: ChaosConfig, say: Callable[[str], None] = print) -> ChaosResult:
    """Run the whole thing; every process started is stopped before returning or raising."""
    namespace = f"chaos{config.seed}-{uuid.uuid4().hex[:6]}"
    plan = (
        plan_chaos(config.seed, config.duration, config.workers, interval=config.interval)
        if config.chaos
        else []
    )
    workdir = config.workdir
    started = time.monotonic()
    t0 = [started]

    def clock() -> float:
        return time.monotonic() - t0[0]

    server = RedisProcess(workdir / "redis")
    pool: WorkerPool | None = None
    traffic: Traffic | None = None
    player: ChaosPlayer | None = None
    errors: list[str] = []
    final_codes: dict[str, int | None] = {}
    try:
        server.start()
        say(
            f"redis-server on port {server.port} (AOF in {server.directory}); namespace {namespace}"
        )
        say(
            f"plan (seed {config.seed}): {len(plan)} events "
            + ", ".join(f"{e.at:g}s {e.describe()}" for e in plan)
        )
        pool = WorkerPool(
            server.url,
            namespace,
            workdir / "logs",
            clock,
            env=worker_env(workdir / "home", config.duration + config.settle + 300),
        )
        for i in range(config.workers):
            pool.start(f"w{i}")
        settings = ClusterSettings(
            redis_url=server.url, namespace=namespace, heartbeat_interval=0.5, heartbeat_ttl=2.0,
            lease_ttl=5.0,
        )  # fmt: skip
        pool.wait_registered(server.client(socket_timeout=5), config.workers)
        t0[0] = time.monotonic()
        traffic = BurstTraffic(
            TrafficConfig(
                seed=config.seed, sessions=config.sessions, threads=config.threads,
                traffic_end=config.duration, deadline=config.duration + config.settle,
                attempt_timeout=config.attempt_timeout, sh_fraction=config.sh_fraction,
                sh_sleep=config.sh_sleep,
            ),
            settings,
            clock,
            burst_fraction=config.burst_fraction,
        )  # fmt: skip
        say(f"{traffic.bursty_sessions()} of {config.sessions} sessions send bursts")
        traffic.start()
        player = ChaosPlayer(plan, pool, server, namespace, clock, say)
        player.start()
        _watch_progress(traffic, pool, player, clock, say)
        player.stop()
        player.join(60)
        say(f"[{clock():7.1f}s] traffic over; stopping the workers (SIGTERM)")
        final_codes = pool.shutdown()
        result = _collect(
            config, namespace, plan, player, traffic, pool, server, final_codes, errors
        )
        result.elapsed = time.monotonic() - started
        return result
    finally:
        _cleanup(traffic, player, pool, server)


def _watch_progress(
    traffic: Traffic,
    pool: WorkerPool,
    player: ChaosPlayer,
    clock: Callable[[], float],
    say: Callable[[str], None],
) -> None:
    next_line = 5.0
    while traffic.alive():
        time.sleep(0.2)
        if clock() >= next_line:
            next_line += 5.0
            say(
                f"[{clock():7.1f}s] {traffic.progress()} | running workers "
                f"{','.join(pool.running())} | events {len(player.done)}/{len(player.plan)}"
            )


def _cleanup(
    traffic: Traffic | None,
    player: ChaosPlayer | None,
    pool: WorkerPool | None,
    server: RedisProcess,
) -> None:
    if traffic is not None:
        traffic.abort()
    if player is not None:
        player.stop()
        if player.is_alive():
            player.join(60)
    if pool is not None:
        pool.shutdown(timeout=10)
    if traffic is not None:
        traffic.join(30)
    server.stop()


def _collect(
    config: ChaosConfig,
    namespace: str,
    plan: list[Event],
    player: ChaosPlayer,
    traffic: Traffic,
    pool: WorkerPool,
    server: RedisProcess,
    final_codes: dict[str, int | None],
    errors: list[str],
) -> ChaosResult:
    traffic.join(30)
    errors.extend(traffic.errors)
    errors.extend(player.errors)
    if traffic.alive():
        errors.append("client threads did not stop by the deadline")
    records = traffic.records()
    keyspace = Keyspace(namespace)
    client = server.client(socket_timeout=30)
    try:
        data = checks.load_sessions(client, keyspace, records)
        findings = checks.Findings()
        by_session: dict[str, list[MessageRecord]] = {}
        for record in records:
            by_session.setdefault(record.session, []).append(record)
        for session, mine in by_session.items():
            checks.check_session(mine, data[session], findings)
        states = pool.states()
        lost = [r for r in records if r.accepted and not r.answered and r.gave_up is None]
        categories: Counter[str] = Counter()
        details = []
        for record in lost:
            category, detail = checks.diagnose_lost(
                client, keyspace, record, data[record.session].stored, states
            )
            categories[category] += 1
            details.append(detail)
    finally:
        client.close()
    violations, tracebacks, warnings = checks.scan_logs({w: p.log for w, p in pool.workers.items()})
    drains = [
        f"{w} (SIGTERM at {p.drain_started:.1f}s) exit {p.exit_code} after "
        + (f"{p.exited_at - p.drain_started:.1f}s" if p.exited_at is not None else "never")
        for w, p in pool.workers.items()
        if p.drain_started is not None
    ]
    table = build_checks(records, findings, (violations, tracebacks, warnings), player, final_codes)
    return ChaosResult(
        config=config, namespace=namespace, plan=plan, played=list(player.done), records=records,
        checks=table, lost_details=details, lost_categories=categories, worker_states=states,
        final_exit_codes=final_codes, drain_exits=drains, harness_errors=errors,
        log_dir=pool.directory, elapsed=0.0,
    )  # fmt: skip


def build_checks(
    records: Sequence[MessageRecord],
    findings: checks.Findings,
    logs: tuple[list[str], Counter[str], Counter[str]],
    player: ChaosPlayer,
    final_codes: dict[str, int | None],
) -> list[checks.Check]:
    """The report's rows: asserted checks (ok True/False) and information (ok None)."""
    c, ex = findings.counts, findings.examples
    violations, tracebacks, warnings = logs
    accepted = [r for r in records if r.accepted]

    def row(name: str, *keys: str, assert_zero: bool = True) -> checks.Check:
        value = sum(c[k] for k in keys)
        examples = [f"[{k}] {x}" for k in keys for x in ex.get(k, [])]
        return checks.Check(name, value, (value == 0) if assert_zero else None, examples)

    rows = [
        checks.Check("messages begun", len(records)),
        checks.Check("accepted", len(accepted)),
        checks.Check("answered (ok reply popped)", sum(r.answered for r in accepted)),
        row("lost (accepted, never answered)", "lost"),
        row("  of which answered only after the deadline",
            "lost: reply arrived after the deadline", assert_zero=False),
        row("failed (non-transient error reply)", "failed (error reply, not retried)"),
        row("duplicated: answered twice (a different reply)", "answered twice (a different reply)",
            "ran again: a different reply left unread"),
        row("duplicated: copy of the reply left unread", "copy of the same reply left in list"),
        row("duplicated: 2nd history entry (ran twice)", "duplicated in history"),
        row("out of order in history", "out of order in history"),
        row("answered but missing from history", "answered but missing from history"),
        row("foreign user messages in history", "foreign user message in history"),
        row("answers that are an interruption notice", "interrupted answer"),
        row("replies for another message / wrong echo", "reply for another message", "wrong text"),
        row("folded (steer/collect) messages",
            "folded messages (info)", assert_zero=False),
        row("  turns that took in messages", "turns that took in messages (info)",
            assert_zero=False),
        row("folded: not answered by its turn",
            "folded into a foreign message", "folded reply differs from its turn's reply",
            "folded but not committed with its turn"),
        row("folded: not in order after its turn", "folded out of order"),
        row("received turn numbers not +1",
            "received turns not +1", "reply without an integer turn"),
        _skippable(row("committed turns not exactly 1..N", "committed turns not 1..N",
                       "committed replies != user messages in history"),
                   "committed replies", findings),
        _skippable(row("stale fencing token accepted",
                       "fence not increasing (stale token accepted)"),
                   "fence", findings),
        _skippable(row("overlapping lease intervals", "overlapping turn leases"),
                   "lease intervals", findings),
        checks.Check("teardown mid-turn in worker logs",
                     len(violations), not violations, violations[:checks.SHOW]),
        row("wrong text of a !sh turn (tool output)", "wrong text (shell)", assert_zero=False),
        row("error replies received (then resubmitted)",
            "error replies received", assert_zero=False),
        checks.Check("resubmissions (same id, after acceptance)",
                     sum(r.resubmissions for r in records)),
        checks.Check("attempt timeouts (no reply in time)",
                     sum(r.attempt_timeouts for r in records)),
        checks.Check("submits that raised (retried, same id)",
                     _counter_text(sum((r.submit_errors for r in records), Counter()))),
        checks.Check("reply polls that raised",
                     _counter_text(sum((r.poll_errors for r in records), Counter()))),
        checks.Check("in history though never accepted",
                     c["in history though never accepted (info)"]),
        checks.Check("events played", _counter_text(Counter(e.action for _, e in player.done))),
        checks.Check("tracebacks in worker logs", sum(tracebacks.values()), None,
                     [f"{n} x {k}" for k, n in tracebacks.most_common(8)]),
        checks.Check("warnings/errors in worker logs", sum(warnings.values()), None,
                     [f"{n} x {k}" for k, n in warnings.most_common(8)]),
        checks.Check("exit codes on the final SIGTERM",
                     ", ".join(f"{w}={code}" for w, code in sorted(final_codes.items())) or "-"),
    ]  # fmt: skip
    return rows


def _skippable(check: checks.Check, key: str, findings: checks.Findings) -> checks.Check:
    if key not in findings.checked and check.value == 0:
        return checks.Check(check.name, "skipped (no committed reply carries it)", None)
    return check


def _counter_text(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {n}" for k, n in counter.most_common()) or "0"


def summary_line(result: ChaosResult) -> str:
    """One grep-able line: the headline numbers."""
    by_name = {c.name: c.value for c in result.checks}
    duplicated = sum(
        int(v) for k, v in by_name.items() if k.startswith("duplicated") and isinstance(v, int)
    )
    return (
        f"SUMMARY seed={result.config.seed} accepted={by_name['accepted']} "
        f"answered={by_name['answered (ok reply popped)']} "
        f"lost={by_name['lost (accepted, never answered)']} duplicated={duplicated} "
        f"out_of_order={by_name['out of order in history']} "
        f"interrupted_answers={by_name['answers that are an interruption notice']} "
        f"resubmissions={by_name['resubmissions (same id, after acceptance)']} "
        f"events={by_name['events played']!s}"
    )


def format_report(result: ChaosResult) -> str:
    """The final table, the lost messages' whereabouts and the event timeline."""
    cfg = result.config
    lines = [
        f"chaos run: seed {cfg.seed}, {cfg.duration:g}s traffic + {cfg.settle:g}s settle, "
        f"{cfg.workers} workers, {cfg.sessions} sessions, chaos {'on' if cfg.chaos else 'OFF'}, "
        f"namespace {result.namespace}, {result.elapsed:.0f}s wall; logs in {result.log_dir}",
        "",
        f"| {'check':<48} | {'value':<60} | result |",
        f"|{'-' * 50}|{'-' * 62}|--------|",
    ]
    for check in result.checks:
        verdict = {True: "ok", False: "FAIL", None: ""}[check.ok]
        value = textwrap.wrap(str(check.value), 60) or [""]
        lines.append(f"| {check.name:<48} | {value[0]:<60} | {verdict:<6} |")
        lines.extend(f"| {'':<48} | {more:<60} |        |" for more in value[1:])
        if check.ok is None and check.examples:
            lines.extend(f"|   {x[:130]}" for x in check.examples)
    if result.lost_categories:
        lines += ["", "lost messages by where they ended up:"]
        lines += [f"  {n:4d} x {k}" for k, n in result.lost_categories.most_common()]
        lines += ["first lost messages:"] + [f"  {d}" for d in result.lost_details[:15]]
    if result.drain_exits:
        lines += ["", "drains: " + "; ".join(result.drain_exits)]
    lines += ["", "timeline: " + "; ".join(f"{t:.1f}s {e.describe()}" for t, e in result.played)]
    lines += [
        "worker states: " + ", ".join(f"{w} {s}" for w, s in sorted(result.worker_states.items()))
    ]
    failures = result.failures
    lines += ["", summary_line(result)]
    lines += [f"{len(failures)} failed check(s)" + (":" if failures else "")]
    lines += [f"  - {f}" for f in failures]
    return "\n".join(lines)
