"""``agent-cluster platforms``: the chat platform bots, their mode, lease holder and lag.

Reads each bot of ``telegram_bots`` and ``slack_apps`` from Redis
(:class:`coordinator.platforms.store.BotStore`): which gateway process holds
its lease (polls and sends its replies), the next update offset, how many
messages wait for their reply and how long the oldest has waited (the lag),
and its counters (accepted, duplicates absorbed, delivered, 429s).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from cluster.connection import connect
from cluster.keys import Keyspace
from cluster.platform_bots import parse_slack_apps, parse_telegram_bots
from coordinator.cli.settings import (
    CONNECTION_SETTINGS,
    HelpFormatter,
    add_settings_options,
    settings_from_args,
)

__all__ = ["register"]


def cmd_platforms(args: argparse.Namespace) -> int:
    """Print one line (or a JSON object) per bot."""
    from coordinator.platforms.store import BotStore

    settings = settings_from_args(args)
    specs = (*parse_telegram_bots(settings.telegram_bots), *parse_slack_apps(settings.slack_apps))
    if not specs:
        print("no bots configured: set telegram_bots or slack_apps (see docs/settings.md)")
        return 0
    client = connect(settings.redis_url)
    rows: list[dict[str, Any]] = []
    try:
        now = time.time()
        for spec in specs:
            store = BotStore(
                client, Keyspace(settings.namespace), platform=spec.platform, bot=spec.name
            )
            state = store.state(now)
            polled = state.stats.get("polled_at")
            rows.append(
                {
                    "platform": spec.platform,
                    "bot": spec.name,
                    "mode": spec.mode,
                    "tenant": spec.tenant,
                    "holder": state.holder or None,
                    "offset": state.offset,
                    "waiting": state.waiting,
                    "lag_seconds": round(state.oldest_wait, 3),
                    "last_poll_seconds_ago": round(now - polled, 3) if polled else None,
                    "accepted": int(state.stats.get("accepted", 0)),
                    "duplicates": int(state.stats.get("duplicates", 0)),
                    "delivered": int(state.stats.get("delivered", 0)),
                    "rate_limited": int(state.stats.get("rate_limited", 0)),
                }
            )
    finally:
        client.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(
            f"{row['platform']:<8} {row['bot']:<16} {row['mode']:<7} tenant={row['tenant']} "
            f"holder={row['holder'] or '-'} waiting={row['waiting']} lag={row['lag_seconds']:.1f}s "
            f"accepted={row['accepted']} duplicates={row['duplicates']} "
            f"delivered={row['delivered']} 429s={row['rate_limited']}"
        )
    return 0


def register(sub: Any) -> None:
    """Add ``platforms`` to the top-level subparsers."""
    platforms = sub.add_parser(
        "platforms",
        help="chat platform bots: mode, lease holder, waiting replies and lag",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    platforms.add_argument("--json", action="store_true", help="JSON for scripts")
    add_settings_options(platforms, (*CONNECTION_SETTINGS, "telegram_bots", "slack_apps"))
    platforms.set_defaults(func=cmd_platforms)
