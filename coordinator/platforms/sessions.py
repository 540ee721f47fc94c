"""Where a chat message goes in the cluster: its session key and its message id.

Pure functions. The session key comes from the platform, the bot and the
chat; in a group chat with ``platform_group_sessions = user`` each user gets
their own session; a thread (a Telegram forum topic, a Slack thread) is a
session of its own. The key is the bot's tenant's own key
(:func:`cluster.tenants.scoped_key`). The message id is the platform's own
id of the delivery (Telegram's ``update_id``, unique per bot; Slack's
``event_id``), so the cluster's per-message dedup answers a redelivered or
twice-received message once.
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.tenants import scoped_key

__all__ = ["ChatPlace", "message_id_for", "session_key_for"]


@dataclass(frozen=True)
class ChatPlace:
    """Where a message was written.

    Attributes:
        chat: The chat (Telegram chat id, Slack channel id).
        user: Who wrote it.
        group: Whether the chat has more than two members.
        thread: The forum topic or thread it belongs to (``""``: none).
    """

    chat: str
    user: str
    group: bool
    thread: str = ""


def session_key_for(
    platform: str, bot: str, tenant: str, place: ChatPlace, *, group_sessions: str
) -> str:
    """The session key of a message written at ``place`` to ``bot``.

    Args:
        platform: ``telegram`` or ``slack``.
        bot: The bot's name.
        tenant: The bot's tenant.
        place: Chat, user, group flag and thread of the message.
        group_sessions: ``chat`` (one session per group chat) or ``user``.
    """
    name = f"{platform}:{bot}:{place.chat}"
    if place.thread:
        name += f":t{place.thread}"
    if place.group and group_sessions == "user":
        name += f":u{place.user}"
    return scoped_key(tenant, name)


def message_id_for(platform: str, bot: str, delivery_id: str) -> str:
    """The cluster message id of a platform delivery (one id per update / event)."""
    return f"{platform}-{bot}-{delivery_id}"
