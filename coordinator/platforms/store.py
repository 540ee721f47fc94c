"""A bot's shared state in Redis: its lease, its polling offset, its inbox of deliveries.

Every gateway serving a bot uses one :class:`BotStore` per bot:

* the **lease** (``lease_acquire``/``lease_extend``/``lease_release`` scripts,
  the same fenced lease a session's turn uses): its holder is the one process
  of the cluster that polls the bot's Telegram token and sends the bot's
  replies; its fencing token grows with every new holder;
* the **offset** (``platform_offset.lua``): the next Telegram ``update_id``
  to ask for, written only under the current fencing token, so a deposed
  poller's confirmation never counts;
* the **inbox** (``platform_accept.lua``): a delivery (update, event) is
  accepted once by message id, whichever gateway received it and however
  often; ``platform_delivered.lua`` (fenced) moves it to the ``done`` set
  once its reply was sent, so a later redelivery is a duplicate too;
* the **previews** (``fenced_hset.lua``): the chat message that shows a
  reply while it streams, so a holder that takes over edits it rather than
  sending the reply a second time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis

from cluster.keys import Keyspace, PlatformKeys
from cluster.redis_text import text
from cluster.scripts import ScriptSet

__all__ = ["BotState", "BotStore", "Delivery"]


@dataclass(frozen=True)
class Delivery:
    """An accepted platform message whose reply is still to be sent.

    Attributes:
        message_id: The cluster message id (from the platform's delivery id).
        session_key: The session it was submitted to.
        chat: Where to reply (Telegram chat id, Slack channel).
        thread: The thread or topic to reply in (``""``: none).
        seq: Order of the delivery within the bot (Telegram ``update_id``,
            Slack event time in microseconds); replies of a chat go in this order.
        accepted_at: When a gateway accepted it (seconds since the epoch).
        inline: The reply when the cluster answered at once (``/stop``), else ``""``.
    """

    message_id: str
    session_key: str
    chat: str
    thread: str
    seq: int
    accepted_at: float
    inline: str = ""

    def encode(self) -> str:
        """The JSON record stored in the inbox."""
        return json.dumps(
            {
                "session_key": self.session_key,
                "chat": self.chat,
                "thread": self.thread,
                "seq": self.seq,
                "at": self.accepted_at,
                "inline": self.inline,
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, message_id: str, raw: str | bytes) -> Delivery:
        """Read an inbox record (``ValueError`` when it is not one)."""
        try:
            data = json.loads(raw)
            return cls(
                message_id=message_id,
                session_key=str(data["session_key"]),
                chat=str(data["chat"]),
                thread=str(data.get("thread", "")),
                seq=int(data["seq"]),
                accepted_at=float(data["at"]),
                inline=str(data.get("inline", "")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"inbox record of {message_id!r} is not a delivery: {exc}") from None


@dataclass(frozen=True)
class BotState:
    """What ``agent-cluster platforms`` shows of one bot.

    Attributes:
        holder: The process holding the bot's lease (``""``: none).
        token: The lease's fencing token (0: none).
        offset: The next update id the poller asks for (Telegram polling).
        waiting: Deliveries accepted and not answered yet.
        oldest_wait: Seconds the oldest of them has waited (the bot's lag).
        stats: Counters: accepted, duplicates, delivered, rate_limited, polled_at.
    """

    holder: str
    token: int
    offset: int
    waiting: int
    oldest_wait: float
    stats: dict[str, float]


class BotStore:
    """One bot's lease, offset and inbox in Redis (sync client: called on the gateway's threads)."""

    def __init__(self, client: redis.Redis, keyspace: Keyspace, *, platform: str, bot: str) -> None:
        self.client = client
        self.keys: PlatformKeys = keyspace.platform(platform, bot)
        self._scripts = ScriptSet(client)

    # -- the lease -------------------------------------------------------------

    def acquire(self, holder: str, ttl: float) -> str | None:
        """Take the lease if nobody holds it; its fence (``N:replid/token``), or ``None`` when held.

        The fence is what every fenced call of the holder presents; one granted
        by a Redis primary that has since been replaced (a failover) is refused.
        """
        got = self._scripts(
            "lease_acquire",
            [self.keys.lease, self.keys.fence, self.keys.fence_epoch],
            [holder, int(ttl * 1000)],
        )
        return text(got[3]) if int(got[0]) == 1 else None

    def extend(self, token: str, ttl: float) -> bool:
        """Renew the lease the caller holds; ``False`` when it was lost."""
        return bool(self._scripts("lease_extend", [self.keys.lease], [token, int(ttl * 1000)]))

    def release(self, token: str) -> bool:
        """Give the lease up (a drain or shutdown), so another process takes over at once."""
        return bool(self._scripts("lease_release", [self.keys.lease], [token]))

    # -- the offset ------------------------------------------------------------

    def offset(self) -> int:
        """The next update id to ask for (0: from the start)."""
        raw = self.client.get(self.keys.offset)
        return int(raw) if raw is not None else 0

    def confirm_offset(self, token: str, offset: int) -> bool:
        """Store the next offset under ``token``; ``False``: the caller was deposed."""
        return bool(
            self._scripts("platform_offset", [self.keys.lease, self.keys.offset], [token, offset])
        )

    # -- the inbox -------------------------------------------------------------

    def accept(self, delivery: Delivery) -> bool:
        """Record a delivery once; ``False`` for a duplicate (already accepted or answered)."""
        return bool(
            self._scripts(
                "platform_accept",
                [self.keys.inbox, self.keys.done, self.keys.stats],
                [delivery.message_id, delivery.encode()],
            )
        )

    def known(self, message_id: str) -> bool:
        """Whether a delivery was accepted already (waiting for its reply, or answered)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hexists(self.keys.inbox, message_id)
        pipe.zscore(self.keys.done, message_id)
        waiting, done = pipe.execute()
        return bool(waiting) or done is not None

    def forget(self, message_id: str) -> None:
        """Drop an accepted delivery the cluster refused, so the platform's retry is accepted."""
        self.client.hdel(self.keys.inbox, message_id)

    def waiting(self) -> list[Delivery]:
        """Accepted deliveries whose reply is not sent yet, in order (undecodable ones skipped)."""
        found = []
        for mid, raw in self.client.hgetall(self.keys.inbox).items():
            try:
                found.append(Delivery.decode(text(mid), raw))
            except ValueError:
                continue
        return sorted(found, key=lambda d: (d.seq, d.message_id))

    def delivered(self, token: str, message_id: str, retention: float) -> bool:
        """Record a sent reply under ``token``; ``False``: the caller was deposed."""
        return bool(
            self._scripts(
                "platform_delivered",
                [
                    self.keys.lease,
                    self.keys.inbox,
                    self.keys.done,
                    self.keys.stats,
                    self.keys.previews,
                ],
                [token, message_id, int(retention * 1000)],
            )
        )

    def note_preview(self, token: str, message_id: str, sent_id: str) -> bool:
        """Record under ``token`` which chat message shows ``message_id``'s streamed reply.

        A holder that takes over edits that message instead of sending the
        reply again. ``False``: the caller was deposed (nothing written).
        """
        got = self._scripts(
            "fenced_hset", [self.keys.lease, self.keys.previews], [token, message_id, sent_id]
        )
        return int(got[0]) == 1

    def preview_of(self, message_id: str) -> str:
        """The chat message showing ``message_id``'s streamed reply (``""``: none was sent)."""
        raw = self.client.hget(self.keys.previews, message_id)
        return text(raw) if raw is not None else ""

    def holds(self, token: str) -> bool:
        """Whether ``token`` (a fence) still holds the lease (checked before sending a reply)."""
        raw = self.client.hget(self.keys.lease, "fence")
        return raw is not None and text(raw) == token

    def count(self, field: str, by: float = 1) -> None:
        """Add to one of the bot's counters (``rate_limited``; :meth:`mark` sets ``polled_at``)."""
        self.client.hincrbyfloat(self.keys.stats, field, by)

    def mark(self, field: str, value: float) -> None:
        """Set one of the bot's figures (e.g. ``polled_at``)."""
        self.client.hset(self.keys.stats, field, value)

    def state(self, now: float) -> BotState:
        """The bot's lease holder, offset, waiting deliveries and counters."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.lease)
        pipe.get(self.keys.offset)
        pipe.hgetall(self.keys.stats)
        lease, offset, stats = pipe.execute()
        waiting = self.waiting()
        lease = {text(k): text(v) for k, v in lease.items()}
        return BotState(
            holder=lease.get("worker", ""),
            token=int(lease.get("token", 0)),
            offset=int(offset or 0),
            waiting=len(waiting),
            oldest_wait=max((now - d.accepted_at for d in waiting), default=0.0),
            stats={text(k): float(v) for k, v in stats.items()},
        )
