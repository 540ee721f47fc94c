"""Start-up checks of the Redis server a worker or coordinator connects to."""

from __future__ import annotations

import logging

import redis

from cluster.redis_text import text

__all__ = ["check_eviction_policy"]

log = logging.getLogger("cluster.redis_checks")


def check_eviction_policy(client: redis.Redis, who: str) -> str | None:
    """Warn loudly unless Redis' ``maxmemory-policy`` is ``noeviction``.

    Any other policy lets Redis silently evict leases, queues or history under
    memory pressure, which breaks every guarantee of the cluster. Where
    ``CONFIG GET`` is refused (managed Redis, fakeredis) it says so once and
    goes on.

    Args:
        client: The Redis client.
        who: Names the caller in the log ("worker w1", "coordinator").

    Returns:
        The policy, or ``None`` when it could not be read.
    """
    try:
        reply = client.config_get("maxmemory-policy")
    except redis.ResponseError as exc:
        log.info(
            "%s: cannot read Redis' maxmemory-policy (%s); make sure it is 'noeviction'", who, exc
        )
        return None
    raw = reply.get("maxmemory-policy") if isinstance(reply, dict) else None
    if raw is None:
        log.info("%s: Redis did not report maxmemory-policy; make sure it is 'noeviction'", who)
        return None
    policy = text(raw)
    if policy != "noeviction":
        log.warning(
            "%s: Redis maxmemory-policy is %r: Redis may silently evict leases, queues or "
            "history under memory pressure. Set `maxmemory-policy noeviction` (redis.conf or "
            "CONFIG SET maxmemory-policy noeviction)",
            who,
            policy,
        )
    return policy
