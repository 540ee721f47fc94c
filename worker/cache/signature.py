"""Agent signatures: when may a cached agent be reused for a new message?

A cached agent is only reused when everything that shapes its frozen system
prompt, its tool schemas or its provider connection is unchanged; otherwise
the provider's prompt cache would be fed a different prefix, or a turn would
run with the wrong credentials. :func:`config_signature` reduces those inputs
to a short stable digest that the cache compares on every checkout.

:func:`extract_cache_busting_config` picks, out of the whole user config, the
few values that are baked into an agent at construction time (context length,
compression settings, disabled toolsets, ...). The worker passes its result as
``cache_keys``: editing one of those values busts the cached agent, editing
anything else does not.

Both functions are pure: no clock, no I/O, no logging. The api key is folded in
as a SHA-256 of the **full** key (JWT-style keys share long prefixes) and is
never stored or logged.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from cluster.errors import ConfigError

__all__ = [
    "CACHE_BUSTING_CONFIG_KEYS",
    "SIGNATURE_HEX_LENGTH",
    "config_signature",
    "extract_cache_busting_config",
]

#: Length of a signature in hex characters (64 bits: collisions are not a concern
#: for the few thousand sessions a worker holds).
SIGNATURE_HEX_LENGTH: Final = 16

#: The ``(section, key)`` pairs of the user config that are baked into an agent when
#: it is built. Editing one of them must bust the cached agent. ``tools.registry_generation``
#: is, in the cluster, the cluster-wide tool-registry generation read from Redis.
CACHE_BUSTING_CONFIG_KEYS: Final[tuple[tuple[str, str], ...]] = (
    ("model", "context_length"),
    ("model", "max_tokens"),
    ("compression", "enabled"),
    ("compression", "threshold"),
    ("compression", "target_ratio"),
    ("compression", "protect_last_n"),
    ("agent", "disabled_toolsets"),
    ("memory", "provider"),
    ("tools", "registry_generation"),
)


def extract_cache_busting_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Pick the cache-busting values out of a user config.

    Args:
        config: the parsed user config (``section -> {key: value}``), or ``None``.

    Returns:
        A flat dict with one ``"section.key"`` entry for every pair of
        :data:`CACHE_BUSTING_CONFIG_KEYS`, always all of them: ``None`` when the
        value is absent, when its section is absent or when the section is not a
        mapping (``compression: "broken"`` counts as absent). Values are deep
        copies, so later edits of ``config`` do not leak into the result.
    """
    result: dict[str, Any] = {}
    for section_name, key in CACHE_BUSTING_CONFIG_KEYS:
        section = config.get(section_name) if isinstance(config, Mapping) else None
        value = section.get(key) if isinstance(section, Mapping) else None
        result[f"{section_name}.{key}"] = copy.deepcopy(value)
    return result


def config_signature(
    model: str,
    runtime: Mapping[str, Any],
    toolsets: Iterable[str] | None,
    ephemeral_prompt: str | None,
    cache_keys: Mapping[str, Any] | None = None,
    user_id: str | None = None,
) -> str:
    """Digest everything that decides whether a cached agent may be reused.

    ``reasoning_config`` is deliberately not an input: it is set on the cached
    agent per message (see :func:`worker.cache.agent.apply_turn_state`).

    Args:
        model: the model name.
        runtime: provider connection: ``api_key``, ``base_url``, ``provider``,
            ``api_mode`` (missing keys count as ``None``). Only a SHA-256 of the
            full api key enters the digest.
        toolsets: enabled toolsets; order and duplicates do not matter. ``None``
            (the platform default) differs from an empty list (no tools).
        ephemeral_prompt: the ephemeral system prompt; ``None`` and ``""`` are
            the same (no prompt).
        cache_keys: extra values baked into the agent, usually the result of
            :func:`extract_cache_busting_config`; order does not matter and
            omitted, ``None`` and ``{}`` are the same.
        user_id: the user the session belongs to.

    Returns:
        A stable lowercase hex digest of :data:`SIGNATURE_HEX_LENGTH` characters.

    Raises:
        ConfigError: a ``cache_keys`` value is not JSON-like (str, number, bool,
            None, list/tuple, set, mapping with string keys).
    """
    api_key = runtime.get("api_key")
    payload = {
        "model": model,
        "api_key_sha256": hashlib.sha256(str(api_key).encode()).hexdigest() if api_key else None,
        "base_url": runtime.get("base_url"),
        "provider": runtime.get("provider"),
        "api_mode": runtime.get("api_mode"),
        "toolsets": None if toolsets is None else sorted(set(toolsets)),
        "ephemeral_prompt": ephemeral_prompt or "",
        "cache_keys": sorted(
            ((str(key), _canonical(key, value)) for key, value in (cache_keys or {}).items()),
            key=lambda item: item[0],
        ),
        "user_id": user_id,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:SIGNATURE_HEX_LENGTH]


def _canonical(key: object, value: Any) -> Any:
    """Turn a cache-key value into plain JSON data with one spelling per meaning."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _canonical(key, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(key, item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((_canonical(key, item) for item in value), key=repr)
    raise ConfigError(
        f"cache key {key!r} has a value of type {type(value).__name__}, which cannot be part "
        "of an agent signature; pass JSON-like values (str, number, bool, None, list, dict)"
    )
