"""What the gateway's guards cost and hold: per-tenant admission, and slow-header connections.

Run: ``.venv/bin/python benchmarks/bench_gateway_guards.py [--calls 3000] [--slow 800]``

Starts its own redis-server and one gateway (``agent-cluster serve
--anonymous``, no worker: ``/healthz`` needs none), then measures:

(a) the round trip of ``tenant_admit.lua`` (requests per minute and a turn in
    flight, what a message adds to a request when both limits are set);
(b) ``--slow`` connections that send a request line and then one header byte
    every 0.2 s, against a 2 s header timeout: how many the gateway closes and
    when, and how long a normal ``/healthz`` takes meanwhile.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

from cluster.keys import Keyspace
from cluster.tenants import TenantLimits, TenantStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cluster import free_port, redis_server  # noqa: E402

HEADER_TIMEOUT = 2.0


def admission(url: str, calls: int) -> None:
    client = redis.Redis.from_url(url)
    store = TenantStore(client, Keyspace("benchguard"))
    limits = TenantLimits(requests_per_minute=10**7, turns_in_flight=10**7)
    for n in range(200):
        store.admit("acme", limits, job_id=f"warm{n}", lifetime=60)
    times = []
    for n in range(calls):
        start = time.perf_counter()
        store.admit("acme", limits, job_id=f"j{n}", lifetime=60)
        times.append(time.perf_counter() - start)
    times.sort()
    client.close()
    print(
        f"tenant_admit.lua round trip ({calls} calls): p50 {times[calls // 2] * 1e6:.0f} us, "
        f"p99 {times[int(calls * 0.99)] * 1e6:.0f} us"
    )


def slow_headers(url: str, count: int) -> None:
    port = free_port()
    env = {**os.environ, "AGENT_CLUSTER_HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT)}
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coordinator.cli",
            "serve",
            "--anonymous",
            "--port",
            str(port),
            "--redis-url",
            url,
            "--namespace",
            "benchguard",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    socks: list[socket.socket] = []
    try:
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        started = time.monotonic()
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            sock.setblocking(False)
            socks.append(sock)
        t = time.perf_counter()
        status = httpx.get(f"{base}/healthz").status_code
        healthz_ms = (time.perf_counter() - t) * 1000
        closed: dict[int, float] = {}
        while len(closed) < count and time.monotonic() - started < 30:
            for index, sock in enumerate(socks):
                if index in closed:
                    continue
                try:
                    sock.send(b"X")
                    if sock.recv(1) == b"":
                        closed[index] = time.monotonic() - started
                except BlockingIOError:
                    pass
                except OSError:
                    closed[index] = time.monotonic() - started
            time.sleep(0.2)
        last = max(closed.values()) if closed else float("nan")
        print(
            f"{count} slow-header connections, header timeout {HEADER_TIMEOUT:g} s: {len(closed)} "
            f"closed, the last after {last:.1f} s; /healthz meanwhile: {status} in "
            f"{healthz_ms:.0f} ms"
        )
    finally:
        for sock in socks:
            sock.close()
        gateway.terminate()
        gateway.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--slow", type=int, default=800)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as url:
        admission(url, args.calls)
        slow_headers(url, args.slow)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
