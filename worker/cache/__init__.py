"""The worker's local agent cache: pure eviction policy, a thread-safe shell, background releases.

:class:`AgentCache` keeps one agent per session between messages, so the
session's frozen system prompt and tool schemas stay byte-identical and the
provider's prompt cache keeps hitting. Inside: :mod:`~worker.cache.policy`
(pure decisions), :mod:`~worker.cache._state` (applies them under the lock),
:mod:`~worker.cache.entry` (entries and checkout handles),
:mod:`~worker.cache.releaser` (soft/hard releases off the caller's thread),
:mod:`~worker.cache.sweeper` (the idle sweep thread),
:mod:`~worker.cache.signature` (what decides reuse) and
:mod:`~worker.cache.agent` (what the cache needs of an agent, per-turn state).
"""

from worker.cache.agent import CachedAgent, TurnState, apply_turn_state, init_for_turn
from worker.cache.agent_cache import DEFAULT_MAX_SIZE, AgentCache
from worker.cache.entry import CheckoutHandle, EntryInfo, InvalidationResult
from worker.cache.policy import PENDING, EvictionCause, Pending
from worker.cache.releaser import Release, ReleaseExecutor, Releaser
from worker.cache.signature import (
    CACHE_BUSTING_CONFIG_KEYS,
    config_signature,
    extract_cache_busting_config,
)

__all__ = [
    "CACHE_BUSTING_CONFIG_KEYS",
    "DEFAULT_MAX_SIZE",
    "PENDING",
    "AgentCache",
    "CachedAgent",
    "CheckoutHandle",
    "EntryInfo",
    "EvictionCause",
    "InvalidationResult",
    "Pending",
    "Release",
    "ReleaseExecutor",
    "Releaser",
    "TurnState",
    "apply_turn_state",
    "config_signature",
    "extract_cache_busting_config",
    "init_for_turn",
]
