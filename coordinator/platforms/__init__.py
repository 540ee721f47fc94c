"""Chat platforms in front of the cluster: Telegram (webhook or one long-poller) and Slack events.

Each platform message becomes a cluster message whose id is the platform's
own delivery id, so it is answered once however many gateways receive it and
however often; one gateway per bot (the holder of the bot's lease in Redis)
polls and sends the replies. The gateway's app mounts
:mod:`coordinator.platforms.hub` (webhook routes, runners). See ``README.md``, "Chat platforms".
"""

from __future__ import annotations

from coordinator.platforms.splitting import split_reply
from coordinator.platforms.store import BotState, BotStore, Delivery

__all__ = ["BotState", "BotStore", "Delivery", "split_reply"]
