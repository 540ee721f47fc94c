"""How many waiting callers one gateway process holds, on how many Redis connections.

Run: ``.venv/bin/python benchmarks/bench_waiters.py [--levels 100,1000,10000] [--ttft 8]
[--clients 3] [--seconds 150] [--trace-memory]``

Starts its own redis-server on a free loopback port, the provider simulator
(every model call waits ``--ttft`` seconds before its first token), 2 worker
processes and one gateway (``agent-cluster serve``), then measures each level N
with :func:`coordinator.bench.waiters.run_level` (the code behind figure 4's
waiting-caller rows of ``agent-cluster bench``; its docstring says what is
sampled and when): callers held and answered, the gateway's Redis connections,
RSS per caller held, CPU while holding them, and a newcomer's quick message
loaded against idle. Prints one table row per level. ``--trace-memory`` runs
the gateway with tracemalloc (``benchmarks/traced_gateway.py``) and prints,
per level, the Python memory per waiting caller by package and the source
lines holding most of it (tracing slows the gateway: its other figures are
not comparable then). Loopback only; nothing is left running.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
from pathlib import Path

import redis

from agent.simulator import ProviderSimulator
from cluster.keys import Keyspace
from cluster.versions import RedisVersionStore
from coordinator.bench.infra import redis_server
from coordinator.bench.waiters import WaitingLevel, run_level, waiting_gateway

NAMESPACE = "benchwait"


def _print_table(rows: list[WaitingLevel], ttft: float, clients: int, *, traced: bool) -> None:
    print(f"\nttft {ttft:g}s, {clients} client processes{', gateway traced' if traced else ''}\n")
    print(
        "| callers | held | answered | errors | Redis conns | gateway RSS | gateway CPU "
        "| CPU while holding | KiB/caller | newcomer idle / loaded | loaded/idle |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r.callers:,} | {r.held:,} | {r.answers:,} | {r.errors:,} "
            f"| {r.redis_conns} | {r.rss_mib:.0f} MiB | {r.cpu_s:.1f} s "
            f"| {r.holding_cpu:.0%} | {r.kib_per_caller:.1f} | {r.newcomer_idle_ms:.1f} / "
            f"{r.newcomer_loaded_ms:.1f} ms | {r.newcomer_ratio:.2f}x |"
        )
    for r in rows:
        if not r.trace:
            continue
        print(f"\ntraced Python memory per waiting caller at {r.callers:,} callers:\n")
        print("| where | KiB/caller | blocks/caller |")
        print("|---|---|---|")
        cut = [where for where, _, _ in r.trace].index("--")
        lines, packages = r.trace[:cut], r.trace[cut + 1 :]
        for where, kib, blocks in sorted(packages, key=lambda t: -t[1])[:8]:
            print(f"| package {where} | {kib:.2f} | {blocks:.1f} |")
        for where, kib, blocks in sorted(lines, key=lambda t: -t[1])[:15]:
            short = where.split("site-packages/")[-1].replace(str(Path.cwd()) + "/", "")
            print(f"| {short} | {kib:.2f} | {blocks:.1f} |")


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
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = Path(tempfile.mkdtemp(prefix="bench-waiters-"))
    home = tmp / "home"
    home.mkdir()
    trace = tmp / "tracemalloc.txt" if args.trace_memory else None
    entry = [str(Path(__file__).resolve().parent / "traced_gateway.py")] if trace else None
    rows = []
    with redis_server(tmp) as url, ProviderSimulator(ttft=args.ttft) as sim:
        client = redis.Redis.from_url(url, socket_timeout=60)
        RedisVersionStore(client, Keyspace(NAMESPACE)).publish_config(
            {"model": {"default": "sim-gpt", "endpoint": "simulator"}}
        )
        endpoints = json.dumps(
            {"simulator": {"provider": "openai", "base_url": sim.openai_base_url}}
        )
        try:
            with waiting_gateway(
                redis_url=url,
                namespace=NAMESPACE,
                home=home,
                endpoints=endpoints,
                callers=max(levels),
                turn_timeout=args.seconds,
                entry=entry,
                env={"BENCH_TRACEMALLOC_OUT": str(trace)} if trace else None,
            ) as (port, gw_pid):
                for n in levels:
                    rows.append(
                        run_level(n, port, gw_pid, client, args.clients, args.seconds, trace)
                    )
                    print(rows[-1].as_dict(), flush=True)
        finally:
            client.close()
    _print_table(rows, args.ttft, args.clients, traced=args.trace_memory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
