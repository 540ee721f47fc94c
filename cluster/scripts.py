"""The Lua scripts of agent-cluster, loaded into Redis once and run by SHA.

Each script is a real file in ``cluster/lua/`` whose header names every
``KEYS[i]`` and ``ARGV[i]``; nothing here builds Lua text. Scripts that need
"now" call Redis ``TIME`` themselves (one clock for every host; Redis >= 5
replicates script effects, so that is safe), and none takes a time from the
caller.

A :class:`ScriptSet` runs scripts with ``EVALSHA`` (the SHA is computed once
per process from the file) and sends ``SCRIPT LOAD`` only when the server
answers ``NOSCRIPT`` (first use, restart, ``SCRIPT FLUSH``): this is what
redis-py's ``register_script`` does, minus its extra ``SCRIPT EXISTS`` round
trip in pipelines. :meth:`ScriptSet.call_with_reads` runs a script and a few
plain reads in one non-transactional pipeline, i.e. one round trip, and stays
usable on Redis Cluster (the reads may live on other slots).

With durability ``replica`` (:mod:`cluster.durability`) the scripts that
acknowledge something to a caller are sent with ``WAIT n timeout`` and ``ROLE``
behind them in the same pipeline (same connection, one round trip), and their
reply is returned only once every attached replica confirmed the write.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.exceptions import NoScriptError

from cluster.durability import NO_DURABILITY, WAIT_REPLIES, Durability

__all__ = ["SCRIPT_NAMES", "ScriptSet", "lua_source"]

SCRIPT_NAMES: tuple[str, ...] = (
    "config_publish",
    "fenced_delete",
    "fenced_hset",
    "job_handoff",
    "job_rescue",
    "lease_acquire",
    "lease_break",
    "lease_extend",
    "lease_release",
    "lock_release",
    "membership_deregister",
    "membership_heartbeat",
    "membership_prune",
    "membership_register",
    "membership_set_state",
    "membership_snapshot",
    "ownership_assign",
    "platform_accept",
    "platform_delivered",
    "platform_offset",
    "registry_bump",
    "schedule_cancel",
    "schedule_claim",
    "schedule_create",
    "schedule_done",
    "schedule_reclaim",
    "session_commit",
    "session_prompt",
    "session_reset",
    "tenant_admit",
    "turn_begin",
    "turn_claim",
    "turn_enqueue",
    "turn_fold",
    "workspace_save",
)

KeyOrArg = str | bytes | int | float


@cache
def lua_source(name: str) -> str:
    """Return the text of ``cluster/lua/<name>.lua``.

    Raises:
        KeyError: ``name`` is not one of :data:`SCRIPT_NAMES`.
    """
    if name not in SCRIPT_NAMES:
        raise KeyError(f"unknown Lua script {name!r}; known: {', '.join(SCRIPT_NAMES)}")
    return resources.files("cluster").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


@cache
def _sha(name: str) -> str:
    return hashlib.sha1(lua_source(name).encode("utf-8")).hexdigest()


class ScriptSet:
    """Runs the project's scripts on one client (stores create one each; it is cheap)."""

    def __init__(self, client: redis.Redis, *, durability: Durability = NO_DURABILITY) -> None:
        """Bind to ``client``; nothing is sent to Redis until a script runs.

        Every script's text is read now, so a process keeps running the Lua
        its Python was written for even if the package is upgraded on disk
        under it (the new version's ``ARGV`` may differ).

        Args:
            client: The Redis client.
            durability: When a script's write must be confirmed by a replica.
        """
        self._client = client
        self._durability = durability
        for name in SCRIPT_NAMES:
            _sha(name)

    def __call__(self, name: str, keys: Sequence[str], args: Sequence[KeyOrArg] = ()) -> Any:
        """Run script ``name`` with ``keys`` and ``args``; returns its raw reply.

        Raises:
            NotReplicated: a durable script's write was not confirmed by a replica.
        """
        if self._durability.waits_for(name):
            reply, _ = self.call_with_reads(name, keys, args, ())
            return reply
        sha = _sha(name)
        try:
            return self._client.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:
            self._client.script_load(lua_source(name))
            return self._client.evalsha(sha, len(keys), *keys, *args)

    def call_with_reads(
        self,
        name: str,
        keys: Sequence[str],
        args: Sequence[KeyOrArg],
        reads: Sequence[str],
    ) -> tuple[Any, list[Any]]:
        """Run a script and ``GET`` each key of ``reads`` in one round trip.

        The pipeline is not a transaction: the reads are not atomic with the
        script, which is fine for reads of counters that only grow, and keeps
        the call legal on Redis Cluster.

        Returns:
            ``(script reply, [value of each read key])``.

        Raises:
            NotReplicated: a durable script's write was not confirmed by a replica.
        """
        sha = _sha(name)
        waits = self._durability.waits_for(name)
        if waits:
            self._durability.learn_once(self._client)
        for attempt in range(2):
            pipe = self._client.pipeline(transaction=False)
            pipe.evalsha(sha, len(keys), *keys, *args)
            for key in reads:
                pipe.get(key)
            if waits:
                self._durability.queue_wait(pipe)
            results = pipe.execute(raise_on_error=False)
            if waits:
                confirmation = results[-WAIT_REPLIES:]
                del results[-WAIT_REPLIES:]
            first = results[0]
            if isinstance(first, NoScriptError) and attempt == 0:
                # The script did not run; load it and send the pipeline again.
                self._client.script_load(lua_source(name))
                continue
            if isinstance(first, Exception):
                raise first
            for value in results[1:]:
                if isinstance(value, Exception):
                    raise value
            if waits and first != []:  # [] is turn_claim's "nothing claimed": nothing to confirm
                self._durability.confirm(name, *confirmation)
            return first, list(results[1:])
        raise AssertionError("unreachable")  # pragma: no cover

    def call_after_move(
        self,
        name: str,
        keys: Sequence[str],
        args: Sequence[KeyOrArg],
        move: tuple[str, str, float],
    ) -> tuple[Any, Any]:
        """``BLMOVE source destination seconds LEFT RIGHT``, then the script, in one round trip.

        The script runs as soon as the blocking pop returns (moved or timed
        out); it must tell from the data what the pop did.

        Returns:
            ``(what the pop moved or None, script reply)``.
        """
        source, destination, seconds = move
        sha = _sha(name)
        waits = self._durability.waits_for(name)
        if waits:
            self._durability.learn_once(self._client)
        pipe = self._client.pipeline(transaction=False)
        pipe.blmove(source, destination, seconds, "LEFT", "RIGHT")  # type: ignore[arg-type]
        pipe.evalsha(sha, len(keys), *keys, *args)
        if waits:
            self._durability.queue_wait(pipe)
        moved, reply, *confirmation = pipe.execute(raise_on_error=False)
        if isinstance(moved, Exception):
            raise moved
        if isinstance(reply, NoScriptError):  # the pop ran; the script did not
            self._client.script_load(lua_source(name))
            reply, _ = self.call_with_reads(name, keys, args, ())
        elif isinstance(reply, Exception):
            raise reply
        elif waits and (moved is not None or reply != []):
            self._durability.confirm(name, *confirmation)
        return moved, reply
