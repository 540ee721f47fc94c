"""Why a turn issues each Redis command: the rows of figure 2's command table.

Counts come from ``INFO commandstats``, which counts the commands a Lua script
runs one by one (an ``EVALSHA`` of ``turn_enqueue.lua`` is one EVALSHA plus
every ``redis.call`` inside it). A turn runs four scripts: ``turn_enqueue``
(gateway), ``turn_claim`` and ``turn_begin`` (worker: claim the rq job, take
the lease with its fencing token) and ``session_commit`` (the fenced commit
with the reply); the rest is rq's job format, the reply wait and the worker's
heartbeat and health record, amortised over the turns of the run.
"""

from __future__ import annotations

__all__ = ["WHY"]


WHY: dict[str, str] = {
    "EVALSHA": "the turn's four scripts: enqueue, claim, begin (lease + fence), commit",
    "HSET": "rq job hash (rq's format: data, status, timestamps, origin; + ac_worker/ac_seq), "
    "owner record, lease holder + token, session meta, tenant usage, heartbeat/health",
    "HGET": "checks inside the scripts: owner/epoch, lease token (fencing), job status and "
    "origin, worker state; the stored reply for duplicate delivery",
    "HINCRBY": "session turn counter and ownership epoch; tenant usage (turns, tokens by kind)",
    "HINCRBYFLOAT": "tenant usage: cost_usd",
    "ZADD": "per-session pending order (enqueue), processed message ids (commit), rq's "
    "started/finished registries, heartbeat zsets (amortised)",
    "RPUSH": "the job id onto the worker's rq queue; history messages and the reply (commit)",
    "DEL": "the lease at commit; the previous reply list; the job's pending marker",
    "ZREM": "pending entry and rq registry entries at commit",
    "PEXPIRE": "lease TTL (begin), reply list TTL (commit)",
    "EXPIRE": "rq job hash result TTL and the session's retention (commit)",
    "ZSCORE": "is the target worker alive (liveness by Redis' clock) at enqueue and begin",
    "TIME": "Redis' clock for leases, liveness and commit timestamps (never a host clock)",
    "GET": "config version checked at turn start (a missed announcement cannot run a stale agent)",
    "HSETNX": "session meta created once (session_key, created)",
    "ZCARD": "is a message of the session already waiting (enqueue: a collect message "
    "joins a run, and a waiting session is not rebalanced)",
    "HDEL": "the turn's entry in the session's foldable-messages hash (commit: steer/collect)",
    "HEXISTS": "duplicate delivery: was this message already committed",
    "EXISTS": "does the rq job still exist (claim, begin)",
    "ZRANGE": "the lowest pending sequence runs first (begin)",
    "ZRANGEBYSCORE": "trim processed message ids past retention (commit)",
    "SADD": "the owned-sessions index of the owner (enqueue)",
    "XADD": "the cluster event log / turn stream entry (commit)",
    "LREM": "the job id out of the worker's in-flight list (complete)",
    "LMOVE": "claim: the job id from the rq queue into the in-flight list, atomically",
    "BLMOVE": "the worker's blocking wait for its next job (one per claim that waited)",
    "BLPOP": "the gateway's wait for the reply list",
    "LINDEX": "claim: peek the next job id",
    "INCR": "the session's fencing token (begin: a new token per lease)",
    "HMGET": "rq job fields read in one call (claim, begin)",
    "MULTI": "rq's pipelines (raw rq) / reply push",
    "EXEC": "rq's pipelines (raw rq) / reply push",
    "XREAD": "rq's result stream wait (raw rq: job.latest_result)",
    "INFO": "INFO replication inside the enqueue, begin and commit scripts: the fencing epoch "
    "compares the primary's replication id (a failover voids older tokens)",
    "SCRIPT|LOAD": "scripts registered once per client",
    "PUBLISH": "announcement of a new job to the worker (enqueue)",
}
