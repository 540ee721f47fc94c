"""Chat platforms against the simulators: poller hand-over, duplicates absorbed, replies under 429s.

Run: ``.venv/bin/python benchmarks/bench_platforms.py [--runs 3] [--lease-ttl 2]``

Starts its own redis-server, provider simulator, Telegram simulator, two
worker processes and two gateways (``agent-cluster serve``) serving one
polling bot and one webhook bot, then measures:

(a) hand-over: the poller's gateway is killed with SIGKILL; kill -> another
    gateway holds the bot's lease, and kill -> the first reply to an update
    sent right after the kill (against the lease TTL: the baseline);
(b) duplicates: one webhook update posted 3 times to each gateway; replies
    sent (must be 1) and duplicates the inbox absorbed (must be 5);
(c) replies per second per chat: 20 messages to one chat with no 429s, then
    with the first 10 sends answered 429 ``retry_after=1``; none may be lost.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402

from agent.simulator import ProviderSimulator  # noqa: E402
from agent.simulator.telegram_api import TelegramSimulator  # noqa: E402
from benchmarks.bench_cluster import redis_server  # noqa: E402
from cluster.keys import Keyspace  # noqa: E402
from cluster.versions import RedisVersionStore  # noqa: E402
from tests.conftest import sim_config, sim_endpoints_env  # noqa: E402
from tests.support.fleet import fleet  # noqa: E402
from tests.support.gateway import start_gateway, stop  # noqa: E402

POLL, HOOK, SECRET = "1:bench-poll-token", "2:bench-hook-token", "bench-hook-secret"


def _holder_pid(client: redis.Redis, ns: str) -> int | None:
    raw = client.hget(Keyspace(ns).platform("telegram", "pollbot").lease, "worker")
    return int(raw.decode().split(":")[-2]) if raw else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lease-ttl", type=float, default=2.0)
    args = parser.parse_args()
    ns = f"bp{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with (
            redis_server(tmp) as url,
            ProviderSimulator() as sim,
            TelegramSimulator() as tg,
            fleet(url, ns, tmp, **sim_endpoints_env(sim)) as workers,
        ):
            client = redis.Redis.from_url(url)
            tg.add_bot(POLL)
            tg.add_bot(HOOK)
            RedisVersionStore(client, Keyspace(ns)).publish_config(sim_config())
            for worker_id in ("w1", "w2"):
                workers.start(worker_id)
            env = {
                "AGENT_CLUSTER_TELEGRAM_BOTS": "pollbot=poll,hookbot=webhook",
                "AGENT_CLUSTER_TELEGRAM_API_URL": tg.url,
                "AGENT_CLUSTER_PLATFORM_LEASE_TTL": str(args.lease_ttl),
                "AGENT_CLUSTER_TELEGRAM_TOKEN_POLLBOT": POLL,
                "AGENT_CLUSTER_TELEGRAM_TOKEN_HOOKBOT": HOOK,
                "AGENT_CLUSTER_TELEGRAM_SECRET_HOOKBOT": SECRET,
            }
            gateways = [start_gateway(url, ns, tmp, f"g{i}", **env) for i in (0, 1)]
            try:
                chat = 1000
                lease_times, reply_times = [], []
                for run in range(args.runs):
                    chat += 1
                    tg.make_update(POLL, chat, "warm")
                    tg.wait_messages(chat, 1)
                    pid = _holder_pid(client, ns)
                    index = next(i for i, g in enumerate(gateways) if g.process.pid == pid)
                    killed = time.monotonic()
                    gateways[index].process.send_signal(signal.SIGKILL)
                    gateways[index].process.wait()
                    tg.make_update(POLL, chat, f"after kill {run}")
                    while _holder_pid(client, ns) in (None, pid):
                        time.sleep(0.01)
                    lease_times.append(time.monotonic() - killed)
                    assert len(tg.wait_messages(chat, 2, 30)) == 2
                    reply_times.append(time.monotonic() - killed)
                    gateways[index] = start_gateway(url, ns, tmp, f"g{index}r{run}", **env)
                print(
                    f"(a) hand-over after kill -9 (lease ttl {args.lease_ttl:g}s, {args.runs} runs): "
                    f"lease taken over median {statistics.median(lease_times):.2f}s "
                    f"(max {max(lease_times):.2f}s); first reply median "
                    f"{statistics.median(reply_times):.2f}s"
                )

                chat += 1
                update = tg.make_update(HOOK, chat, "dup", queue=False)
                posts = [
                    threading.Thread(
                        target=tg.post_webhook,
                        args=(f"{g.url}/v1/platforms/telegram/hookbot", update),
                        kwargs={"secret": SECRET},
                    )
                    for g in gateways
                    for _ in range(3)
                ]
                for thread in posts:
                    thread.start()
                for thread in posts:
                    thread.join()
                tg.wait_messages(chat, 1)
                time.sleep(1.0)
                stats = client.hgetall(Keyspace(ns).platform("telegram", "hookbot").stats)
                print(
                    f"(b) one update posted 6 times to 2 gateways: {len(tg.messages(chat))} reply, "
                    f"{int(stats[b'duplicates'])} duplicates absorbed"
                )

                for label, limited in (("no 429s", 0), ("the first 10 sends answered 429 retry_after=1", 10)):
                    chat += 1
                    if limited:
                        tg.rate_limit(limited, retry_after=1)
                    start = time.monotonic()
                    for n in range(20):
                        tg.make_update(POLL, chat, f"m{n}")
                    sent = tg.wait_messages(chat, 20, 120)
                    took = time.monotonic() - start
                    ordered = [m.text for m in sent] == [f"echo: m{n}" for n in range(20)]
                    print(
                        f"(c) 20 messages to one chat, {label}: {len(sent)} replies in order={ordered}, "
                        f"{len(sent) / took:.1f} replies/s"
                    )
            finally:
                for gateway in gateways:
                    stop(gateway.process)
            client.close()


if __name__ == "__main__":
    os.environ.setdefault("AGENT_CLUSTER_LOG_LEVEL", "WARNING")
    main()
