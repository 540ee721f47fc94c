"""Chat platforms against the simulators: poller hand-over, duplicates absorbed, replies under 429s.

Run: ``.venv/bin/python benchmarks/bench_platforms.py [--runs 3] [--lease-ttl 2]
[--edit-interval 1] [--chat-interval 1]``

Starts its own redis-server, provider simulator, Telegram simulator, two
worker processes and two gateways (``agent-cluster serve``) serving one
polling bot and one webhook bot, then measures:

(a) hand-over: the poller's gateway is killed with SIGKILL; kill -> another
    gateway holds the bot's lease, and kill -> the first reply to an update
    sent right after the kill (against the lease TTL: the baseline);
(b) duplicates: one webhook update posted 3 times to each gateway; replies
    sent (must be 1) and duplicates the inbox absorbed (must be 5);
(c) replies per second per chat: 20 messages to one chat with no 429s, then
    with the first 10 sends answered 429 ``retry_after=1``; none may be lost
    (sends to one chat are paced at ``--chat-interval``: Telegram's ~1/s);
(d) streaming: a reply streamed over ~4 s; edits of its message, the
    smallest and median gap between them (bounded by ``--edit-interval``);
(e) the double-reply window: the holder is killed with SIGKILL while replies
    stream, ``--runs`` times; replies sent twice (or a partial message left
    beside the full reply) out of the messages answered.
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


def _settled(client: redis.Redis, ns: str, timeout: float = 120.0) -> None:
    """Wait until every accepted update of the polling bot has its final reply sent."""
    deadline = time.monotonic() + timeout
    inbox = Keyspace(ns).platform("telegram", "pollbot").inbox
    while client.hlen(inbox) and time.monotonic() < deadline:
        time.sleep(0.02)


def _kill_holder(client: redis.Redis, ns: str, gateways: list) -> tuple[int, int, float]:
    """SIGKILL the gateway holding the polling bot's lease: its index, pid and the kill time."""
    pid = _holder_pid(client, ns)
    index = next(i for i, g in enumerate(gateways) if g.process.pid == pid)
    killed = time.monotonic()
    gateways[index].process.send_signal(signal.SIGKILL)
    gateways[index].process.wait()
    return index, pid or 0, killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lease-ttl", type=float, default=2.0)
    parser.add_argument("--edit-interval", type=float, default=1.0)
    parser.add_argument("--chat-interval", type=float, default=1.0)
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
                "AGENT_CLUSTER_PLATFORM_EDIT_INTERVAL": str(args.edit_interval),
                "AGENT_CLUSTER_PLATFORM_CHAT_INTERVAL": str(args.chat_interval),
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
                    _settled(client, ns)
                    index, pid, killed = _kill_holder(client, ns, gateways)
                    tg.make_update(POLL, chat, f"after kill {run}")
                    while _holder_pid(client, ns) in (None, pid):
                        time.sleep(0.01)
                    lease_times.append(time.monotonic() - killed)
                    assert len(tg.wait_messages(chat, 2, 30)) == 2
                    reply_times.append(time.monotonic() - killed)
                    gateways[index] = start_gateway(url, ns, tmp, f"g{index}r{run}", **env)
                print(
                    f"(a) hand-over after kill -9 (lease ttl {args.lease_ttl:g}s, {args.runs} "
                    f"runs): lease taken over median {statistics.median(lease_times):.2f}s (max "
                    f"{max(lease_times):.2f}s); first reply median "
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

                for label, limited in (
                    ("no 429s", 0),
                    ("the first 10 sends answered 429 retry_after=1", 10),
                ):
                    chat += 1
                    if limited:
                        tg.rate_limit(limited, retry_after=1)
                    start = time.monotonic()
                    for n in range(20):
                        tg.make_update(POLL, chat, f"m{n}")
                    tg.wait_messages(chat, 20, 120)
                    _settled(client, ns)
                    took = time.monotonic() - start
                    sent = tg.messages(chat)
                    ordered = [m.text for m in sent] == [f"echo: m{n}" for n in range(20)]
                    print(
                        f"(c) 20 messages to one chat, {label}: {len(sent)} replies in "
                        f"order={ordered}, {len(sent) / took:.2f} replies/s (pacing "
                        f"{args.chat_interval:g}s per chat)"
                    )

                chat += 1
                words = " ".join(f"w{n}" for n in range(100))
                sim.set_latency(ttft=0.2, tokens_per_second=50)
                tg.make_update(POLL, chat, words)
                tg.wait_messages(chat, 1)
                _settled(client, ns)
                sim.set_latency()
                message = tg.messages(chat)[0]
                shown = [message.sent_at, *message.edited_at]
                gaps = [b - a for a, b in zip(shown, shown[1:], strict=False)]
                print(
                    f"(d) a reply streamed over {shown[-1] - shown[0]:.1f}s: 1 message, "
                    f"{message.edits} edits, gap between edits min {min(gaps):.2f}s median "
                    f"{statistics.median(gaps):.2f}s (edit interval {args.edit_interval:g}s); "
                    f"final text complete={message.text == 'echo: ' + words}"
                )

                answered = doubled = partial = 0
                sim.set_latency(ttft=0.2, tokens_per_second=40)
                for run in range(args.runs):
                    chat += 1
                    texts = [
                        f"r{run} m{n} " + " ".join(f"w{k}" for k in range(30)) for n in range(4)
                    ]
                    for text in texts:
                        tg.make_update(POLL, chat, text)
                    tg.wait_messages(chat, 1, 30)
                    time.sleep(0.3 + 0.4 * run / max(1, args.runs))  # mid-stream, varied
                    index, _pid, _killed = _kill_holder(client, ns, gateways)
                    gateways[index] = start_gateway(url, ns, tmp, f"g{index}s{run}", **env)
                    tg.wait_messages(chat, len(texts), 60)
                    _settled(client, ns)
                    time.sleep(1.0)
                    finals = [m.text for m in tg.messages(chat)]
                    expected = {f"echo: {t}" for t in texts}
                    answered += len(texts)
                    doubled += sum(finals.count(e) - 1 for e in expected if finals.count(e) > 1)
                    partial += sum(1 for f in finals if f not in expected)
                    assert expected <= set(finals), "a message was not answered"
                sim.set_latency()
                print(
                    f"(e) holder killed mid-stream {args.runs} times: {answered} messages "
                    "answered, "
                    f"{doubled} replies sent twice, {partial} partial messages left beside a reply"
                )
            finally:
                for gateway in gateways:
                    stop(gateway.process)
            client.close()


if __name__ == "__main__":
    os.environ.setdefault("AGENT_CLUSTER_LOG_LEVEL", "WARNING")
    main()
