"""``agent-cluster demo --platform telegram``: a Telegram bot served by two gateways, one poller.

Everything runs in this process on an embedded fakeredis, as ``agent-cluster
demo`` does: two workers, the provider simulator as the model (streaming at
a readable speed), the Telegram Bot API simulator, and two gateways
(``gw-a``, ``gw-b``) serving the same polling bot, each with its
:class:`~coordinator.platforms.runner.BotRunner` on one event loop. The story:

1. both gateways compete for the bot's lease; its holder is the only process
   calling ``getUpdates`` (Telegram answers two pollers of one token with 409);
2. a user chats; each reply is shown while it is written, in one message
   edited at a bounded rate;
3. the polling gateway is stopped without giving its lease up (as ``kill -9``
   would), while the user goes on writing;
4. the other gateway takes the lease over when it expires and polls on from
   the offset stored in Redis: nothing is lost, nothing answered twice;
5. the chat transcript as the user sees it, and the figures.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

from agent.simulator import ProviderSimulator
from agent.simulator.telegram_api import TelegramSimulator
from cluster.endpoints import Endpoint
from cluster.settings import ClusterSettings
from coordinator.embedded import EmbeddedCluster
from coordinator.http.gateway import Gateway
from coordinator.platforms.hub import PlatformHub

__all__ = ["CHAT_MESSAGES", "run_platform_demo"]

MODEL = "sim-gpt"
BOT = "demo"
_TOKEN = "123456:demo-token-" + "x" * 20
_CHAT = 4242
_LEASE_TTL = 1.5
CHAT_MESSAGES = (
    "Hi! Which tram goes up to the castle in Lisbon?",
    "And where do we get the best custard tarts?",
    "Book us a table for four at seven, please.",
    "Thanks, that is all for today.",
)


class _PlatformGateway:
    """One in-process gateway serving the demo bot (its runner started on the shared loop)."""

    def __init__(self, name: str, settings: ClusterSettings, portal: BlockingPortal) -> None:
        self.name = name
        self.gateway = Gateway.open(settings)
        self.hub = PlatformHub(self.gateway, {"AGENT_CLUSTER_TELEGRAM_TOKEN_DEMO": _TOKEN})
        self.runner = self.hub.bots[("telegram", BOT)].runner
        self._portal = portal
        self._task: Future[Any] = portal.start_task_soon(self.runner.run)

    @property
    def holds(self) -> bool:
        return self.runner.token is not None

    def kill(self) -> None:
        """Stop at once, keeping the lease (nothing is given up: as a crash)."""
        self._task.cancel()

    def close(self, *, release: bool) -> None:
        if release:
            self._portal.call(self.runner.release)
        self._task.cancel()
        self._portal.call(self.gateway.close)


def _wait(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``condition()`` held (``timeout`` if it never did)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            break
        time.sleep(0.02)
    return time.monotonic() - started


def run_platform_demo(*, say: Callable[[str], None] = print) -> int:
    """Run the Telegram story and print it; the exit code (0, or 1 if a reply is missing)."""
    started = time.monotonic()
    with (
        ProviderSimulator() as sim,
        TelegramSimulator() as tg,
        start_blocking_portal() as portal,
    ):
        tg.add_bot(_TOKEN)
        sim.set_latency(ttft=0.2, tokens_per_second=30)  # replies stream at a readable pace
        simulator = Endpoint("simulator", "openai", sim.openai_base_url)
        base = ClusterSettings(heartbeat_interval=0.2, heartbeat_ttl=2.0, endpoints=(simulator,))
        with EmbeddedCluster(workers=2, settings=base, environ=dict(os.environ)) as cluster:
            version = cluster.publish_config(
                {"model": {"endpoint": "simulator", "default": MODEL, "max_tokens": 512}}
            )
            cluster.wait_for_config(version)
            settings = dataclasses.replace(
                cluster.settings,
                telegram_bots=f"{BOT}=poll",
                telegram_api_url=tg.url,
                platform_lease_ttl=_LEASE_TTL,
                platform_edit_interval=0.3,
                platform_chat_interval=0.1,
            )
            say(
                "agent-cluster demo --platform telegram: 2 workers and 2 gateways on one "
                "in-process fakeredis; the Telegram Bot API and the model are local simulators "
                f"({tg.url}, {sim.openai_base_url}): no server, no token"
            )
            gateways = [_PlatformGateway(n, settings, portal) for n in ("gw-a", "gw-b")]
            try:
                return _story(tg, gateways, say, started)
            finally:
                for gw in gateways:
                    gw.close(release=gw.holds)


def _story(
    tg: TelegramSimulator,
    gateways: list[_PlatformGateway],
    say: Callable[[str], None],
    started: float,
) -> int:
    _wait(lambda: any(g.holds for g in gateways), 10)
    poller = next(g for g in gateways if g.holds)
    other = next(g for g in gateways if g is not poller)
    say(
        f"1. {gateways[0].name} and {gateways[1].name} serve bot {BOT!r} by long polling; "
        f"{poller.name} holds its lease in Redis and is the only one calling getUpdates "
        f"({other.name} waits for the lease)"
    )
    sent = 0

    def chat(text: str) -> None:
        nonlocal sent
        tg.make_update(_TOKEN, _CHAT, text)
        sent += 1

    for text in CHAT_MESSAGES[:2]:
        chat(text)
        _wait(lambda: _final(tg) >= sent, 20)
    edits = sum(m.edits for m in tg.messages(_CHAT))
    say(
        f"2. the user writes {sent} messages; {poller.name} polls them, the workers answer, and "
        "each reply is shown while it is written, in one message edited at most every 0.3 s "
        f"({edits} edits in all)"
    )
    poller.kill()
    killed = time.monotonic()
    for text in CHAT_MESSAGES[2:]:
        chat(text)
    say(
        f"3. {poller.name} is stopped without giving its lease up (as kill -9 would); the user "
        f"writes {len(CHAT_MESSAGES) - 2} more messages meanwhile"
    )
    _wait(lambda: other.holds, 10 * _LEASE_TTL)
    handover = time.monotonic() - killed
    _wait(lambda: _final(tg) >= sent, 30)
    time.sleep(0.5)  # a second reply to any message would have come by now
    answered = len(tg.messages(_CHAT))
    outcome = "none lost, none twice" if answered == _final(tg) == sent else "NOT exactly once"
    say(
        f"4. {other.name} took the lease over {handover:.1f}s later (lease ttl {_LEASE_TTL:g}s) "
        f"and polled on from the offset stored in Redis: {answered} replies for {sent} "
        f"messages, {outcome}"
    )
    say("")
    say(f"5. the chat as the user sees it (chat {_CHAT}):")
    replies = tg.messages(_CHAT)
    for n, text in enumerate(CHAT_MESSAGES):
        say(f"   user > {text}")
        if n < len(replies):
            say(f"   bot  < {replies[n].text}   ({replies[n].edits} edits while streaming)")
    say("")
    stats = other.runner.store.state(time.time()).stats
    say(
        f"getUpdates calls: {tg.polls}; 409 Conflict answers: {tg.conflicts} (seen by a live "
        f"poller: {int(stats.get('conflicts', 0))}); updates left unconfirmed: "
        f"{tg.pending_updates(_TOKEN)}; "
        f"duplicates absorbed: {int(stats.get('duplicates', 0))}; "
        f"done in {time.monotonic() - started:.1f}s"
    )
    return 0 if answered == _final(tg) == sent else 1


def _final(tg: TelegramSimulator) -> int:
    """Replies that show their final text (an ``echo:`` of the whole message)."""
    texts = {m.text for m in tg.messages(_CHAT)}
    return sum(f"echo: {text}" in texts for text in CHAT_MESSAGES)
