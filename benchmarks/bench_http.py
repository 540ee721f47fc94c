"""Time to first token through the HTTP gateway vs calling the model directly; SSE cost per event.

Run: ``.venv/bin/python benchmarks/bench_http.py [--turns 100] [--ttft 0.1] [--events 5000]``

Starts its own redis-server, the provider simulator (fixed time to first
token, 100 tokens/s), 2 worker processes and one gateway (``agent-cluster
serve``), then measures in the same run:

(a) time to first token of a streamed chat completion with the ``openai`` SDK:
    straight to the simulator (the baseline) against the gateway's
    OpenAI-compatible endpoint and its native SSE endpoint; what the gateway
    adds is route + enqueue + claim + lease + agent + Redis stream + SSE;
(b) a whole turn, not streamed: the Python ``Coordinator.submit`` against
    the gateway's JSON endpoint (what HTTP itself adds);
(c) SSE overhead per event: replaying a Redis stream of N events through
    ``GET /v1/sessions/{key}/messages/{id}/events`` (XREAD, decode, encode,
    HTTP chunk, client parse) against reading the same stream with ``XRANGE``
    from Python.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import redis

from agent.simulator import ProviderSimulator
from cluster.keys import Keyspace
from cluster.settings import ClusterSettings
from cluster.versions import RedisVersionStore
from coordinator.ingress import Coordinator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cluster import free_port, redis_server, use_simulator  # noqa: E402

NAMESPACE = "benchhttp"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "coordinator.cli", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


def wait_http(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def ttft_openai(client: openai.OpenAI, text: str, **extra: object) -> float:
    started = time.perf_counter()
    stream = client.chat.completions.create(
        model="sim-gpt",
        messages=[{"role": "user", "content": text}],
        stream=True,
        **extra,  # type: ignore[call-overload]
    )
    first = 0.0
    for chunk in stream:
        if not first and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
    return first


def ttft_sse(http: httpx.Client, session: str, text: str) -> float:
    started = time.perf_counter()
    first = 0.0
    with http.stream(
        "POST",
        f"/v1/sessions/{session}/messages",
        json={"text": text},
        headers={"Accept": "text/event-stream"},
    ) as response:
        for line in response.iter_lines():
            if not first and line == "event: delta":
                first = time.perf_counter() - started
    return first


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure(turns: int, fn: Callable[[int], float]) -> list[float]:
    for n in range(3):  # warm-up: agents built, connections open
        fn(-1 - n)
    return [fn(n) for n in range(turns)]


def sse_per_event(url: str, client: redis.Redis, events: int) -> tuple[float, float]:
    keyspace = Keyspace(NAMESPACE)
    session, message = "bench-replay", uuid.uuid4().hex
    key = keyspace.turn_stream(session, message)
    pipe = client.pipeline(transaction=False)
    for n in range(events - 1):
        pipe.xadd(key, {"e": json.dumps({"type": "delta", "text": f"token{n} "})})
    pipe.xadd(key, {"e": json.dumps({"type": "final", "text": "done"})})
    pipe.expire(key, 600)
    pipe.execute()
    gateway_times, redis_times = [], []
    with httpx.Client(base_url=url, timeout=60) as http:
        for _ in range(5):
            started = time.perf_counter()
            seen = 0
            with http.stream(
                "GET", f"/v1/sessions/{session}/messages/{message}/events"
            ) as response:
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        json.loads(line[5:])
                        seen += 1
            gateway_times.append(time.perf_counter() - started)
            assert seen == events, seen
            started = time.perf_counter()
            for _id, fields in client.xrange(key):
                json.loads(fields[b"e"])
            redis_times.append(time.perf_counter() - started)
    return min(gateway_times) / events, min(redis_times) / events


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument(
        "--ttft", type=float, default=0.1, help="the simulator's fixed time to first token"
    )
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    env = {
        **os.environ,
        "OPENAI_API_KEY": "sk-bench",
        "AGENT_CLUSTER_HOME": str(tmp / "home"),
        "AGENT_CLUSTER_SANDBOX": "auto",
    }
    procs: list[subprocess.Popen[bytes]] = []
    with redis_server(tmp) as url, ProviderSimulator(ttft=args.ttft, tokens_per_second=100) as sim:
        client = redis.Redis.from_url(url)
        RedisVersionStore(client, Keyspace(NAMESPACE)).publish_config(
            use_simulator(sim.openai_base_url)
        )
        env["AGENT_CLUSTER_ENDPOINTS"] = os.environ["AGENT_CLUSTER_ENDPOINTS"]
        common = ["--redis-url", url, "--namespace", NAMESPACE]
        port = free_port()
        try:
            for worker in ("b1", "b2"):
                procs.append(start(["worker", "--id", worker, *common], env, tmp / f"{worker}.log"))
            procs.append(
                start(["serve", "--anonymous", "--port", str(port), *common], env, tmp / "gw.log")
            )
            gateway = f"http://127.0.0.1:{port}"
            wait_http(f"{gateway}/healthz")
            while httpx.get(f"{gateway}/readyz").json().get("live_workers", 0) < 2:
                time.sleep(0.1)
            text = "one two three four five six seven eight"
            direct = openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-bench", max_retries=0)
            via = openai.OpenAI(base_url=f"{gateway}/v1", api_key="anonymous", max_retries=0)
            http = httpx.Client(base_url=gateway, timeout=60)
            baseline = measure(args.turns, lambda n: ttft_openai(direct, text))
            compat = measure(
                args.turns,
                lambda n: ttft_openai(via, text, extra_headers={"X-Session-Key": f"oai-{n % 8}"}),
            )
            native = measure(args.turns, lambda n: ttft_sse(http, f"sse-{n % 8}", text))
            gw_event, redis_event = sse_per_event(gateway, client, args.events)
            coordinator = Coordinator(
                settings=ClusterSettings.from_mapping({"redis_url": url, "namespace": NAMESPACE})
            )
            python_turn = measure(
                args.turns, lambda n: timed(lambda: coordinator.submit(f"py-{n % 8}", text))
            )
            json_turn = measure(
                args.turns,
                lambda n: timed(
                    lambda: http.post(
                        f"/v1/sessions/js-{n % 8}/messages", json={"text": text}
                    ).raise_for_status()
                ),
            )
            coordinator.close()
            http.close()
            direct.close()
            via.close()
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=60)
            client.close()

    def row(name: str, values: list[float]) -> str:
        p50, p99 = pct(values, 0.5), pct(values, 0.99)
        b50, b99 = pct(baseline, 0.5), pct(baseline, 0.99)
        return (
            f"| {name} | {p50 * 1000:.1f} | {p99 * 1000:.1f} | {(p50 - b50) * 1000:+.1f} | "
            f"{(p99 - b99) * 1000:+.1f} | {p50 / b50:.2f}x |"
        )

    print(
        f"time to first token, simulator ttft {args.ttft * 1000:.0f} ms, {args.turns} turns each, "
        "8 sessions"
    )
    print("| path | p50 ms | p99 ms | added p50 ms | added p99 ms | p50 ratio |")
    print("|---|---|---|---|---|---|")
    print(row("openai SDK -> simulator (baseline)", baseline))
    print(row("openai SDK -> gateway /v1/chat/completions -> worker -> simulator", compat))
    print(row("httpx SSE -> gateway /v1/sessions/{key}/messages -> worker -> simulator", native))
    print()
    print(f"whole turn, not streamed ({args.turns} turns each, 8 sessions)")
    print("| path | p50 ms | p99 ms | added p50 ms | p50 ratio |")
    print("|---|---|---|---|---|")
    p50 = pct(python_turn, 0.5)
    print(
        f"| Coordinator.submit, Python (baseline) | {p50 * 1000:.1f} | "
        f"{pct(python_turn, 0.99) * 1000:.1f} | +0.0 | 1.00x |"
    )
    j50 = pct(json_turn, 0.5)
    print(
        f"| httpx POST /v1/sessions/{{key}}/messages (JSON) | {j50 * 1000:.1f} | "
        f"{pct(json_turn, 0.99) * 1000:.1f} | {(j50 - p50) * 1000:+.1f} | {j50 / p50:.2f}x |"
    )
    print()
    print(f"SSE overhead per event ({args.events} events replayed from Redis, best of 5)")
    print("| path | us per event | ratio |")
    print("|---|---|---|")
    print(f"| XRANGE + json.loads in Python (baseline) | {redis_event * 1e6:.1f} | 1.00x |")
    print(
        f"| gateway SSE: XREAD -> SSE -> HTTP -> client parse | {gw_event * 1e6:.1f} | "
        f"{gw_event / redis_event:.2f}x |"
    )
    print(f"| added by the gateway | {(gw_event - redis_event) * 1e6:.1f} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
