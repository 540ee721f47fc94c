"""Signature and cache-busting extraction rules (DESIGN: "Signature (decides reuse)")."""

from __future__ import annotations

import inspect
import logging
import re
from typing import Any

import pytest

from cluster.errors import ConfigError
from tests.fakes import FakeAgent
from worker.cache import (
    CACHE_BUSTING_CONFIG_KEYS,
    AgentCache,
    config_signature,
    extract_cache_busting_config,
)

JWT_A = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWFsaWNl"
JWT_B = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlLWJvYg"

RUNTIME = {
    "api_key": JWT_A,
    "base_url": "https://api.example.test/v1",
    "provider": "openai",
    "api_mode": "chat_completions",
}

BASE: dict[str, Any] = {
    "model": "gpt-test",
    "runtime": RUNTIME,
    "toolsets": ["terminal", "memory", "todo"],
    "ephemeral_prompt": "Be brief.",
    "cache_keys": {"model.context_length": 128000, "compression.enabled": True},
    "user_id": "u-1",
}


def sig(**changes: Any) -> str:
    args = {**BASE, **changes}
    return config_signature(
        args["model"],
        args["runtime"],
        args["toolsets"],
        args["ephemeral_prompt"],
        cache_keys=args["cache_keys"],
        user_id=args["user_id"],
    )


def test_signature_is_a_short_stable_hex_digest() -> None:
    first = sig()
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert sig() == first
    assert sig(runtime=dict(RUNTIME)) == first


def test_jwt_like_keys_sharing_a_long_prefix_give_different_signatures() -> None:
    assert JWT_A[:40] == JWT_B[:40]
    assert sig(runtime={**RUNTIME, "api_key": JWT_A}) != sig(runtime={**RUNTIME, "api_key": JWT_B})


def test_keys_differing_only_in_the_last_character_differ() -> None:
    assert sig(runtime={**RUNTIME, "api_key": JWT_A + "x"}) != sig(
        runtime={**RUNTIME, "api_key": JWT_A + "y"}
    )


def test_api_key_is_never_in_the_signature_nor_logged(
    make_cache: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "sk-live-" + "s3cr3t" * 8
    signature = sig(runtime={**RUNTIME, "api_key": secret})
    assert secret not in signature and secret[:8] not in signature
    cache: AgentCache[FakeAgent] = make_cache(max_size=1)
    with cache.checkout("a", signature=signature, committed_turns=0, build=FakeAgent):
        for session in ("b", "c"):
            with cache.checkout(session, signature=signature, committed_turns=0, build=FakeAgent):
                pass
    cache.evict("a")
    cache.shutdown()
    assert caplog.records, "the cap warnings should have been logged"
    assert all(secret not in record.getMessage() for record in caplog.records)


def test_toolsets_are_order_insensitive() -> None:
    assert sig(toolsets=["todo", "terminal", "memory"]) == sig(
        toolsets=["memory", "todo", "terminal"]
    )
    assert sig(toolsets=("memory", "terminal", "todo")) == sig()


def test_no_toolsets_differs_from_default_toolsets() -> None:
    assert sig(toolsets=[]) != sig(toolsets=None)


def test_cache_keys_are_order_insensitive() -> None:
    forward = {"a": 1, "b": [1, 2], "c": None}
    backward = {"c": None, "b": [1, 2], "a": 1}
    assert sig(cache_keys=forward) == sig(cache_keys=backward)


def test_omitted_none_and_empty_cache_keys_are_equal() -> None:
    omitted = config_signature("m", RUNTIME, ["t"], "p", user_id="u")
    assert omitted == config_signature("m", RUNTIME, ["t"], "p", cache_keys=None, user_id="u")
    assert omitted == config_signature("m", RUNTIME, ["t"], "p", cache_keys={}, user_id="u")
    assert omitted != config_signature(
        "m", RUNTIME, ["t"], "p", cache_keys={"a": None}, user_id="u"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-other"},
        {"runtime": {**RUNTIME, "api_key": JWT_B}},
        {"runtime": {**RUNTIME, "base_url": "https://other.example.test/v1"}},
        {"runtime": {**RUNTIME, "provider": "anthropic"}},
        {"runtime": {**RUNTIME, "api_mode": "responses"}},
        {"toolsets": ["terminal", "memory"]},
        {"ephemeral_prompt": "Be verbose."},
        {"cache_keys": {"model.context_length": 64000, "compression.enabled": True}},
        {"cache_keys": {"model.context_length": 128000, "compression.enabled": False}},
        {"cache_keys": {"model.context_length": 128000, "compression.enabled": True, "x": 1}},
        {"user_id": "u-2"},
        {"user_id": None},
    ],
    ids=lambda change: next(iter(change)),
)
def test_each_field_change_changes_the_signature(change: dict[str, Any]) -> None:
    assert sig(**change) != sig()


def test_reasoning_config_is_not_part_of_the_signature() -> None:
    assert "reasoning" not in " ".join(inspect.signature(config_signature).parameters)
    assert sig(runtime={**RUNTIME, "reasoning_config": {"effort": "high"}}) == sig()


def test_unhashable_but_json_like_cache_key_values_are_fine_and_sets_are_order_free() -> None:
    assert sig(cache_keys={"a": {"x": [1, 2]}, "b": {3, 1, 2}}) == sig(
        cache_keys={"b": frozenset({2, 3, 1}), "a": {"x": [1, 2]}}
    )


def test_a_cache_key_value_that_is_not_json_like_is_rejected_with_its_name() -> None:
    with pytest.raises(ConfigError, match="'weird'"):
        sig(cache_keys={"weird": object()})


# -- extract_cache_busting_config ------------------------------------------------------

DOCUMENTED = {
    "model.context_length",
    "model.max_tokens",
    "compression.enabled",
    "compression.threshold",
    "compression.target_ratio",
    "compression.protect_last_n",
    "agent.disabled_toolsets",
    "memory.provider",
    "tools.registry_generation",
}


def test_the_documented_pairs_are_all_listed() -> None:
    assert {f"{section}.{key}" for section, key in CACHE_BUSTING_CONFIG_KEYS} == DOCUMENTED


def test_every_documented_key_is_present_and_none_when_absent() -> None:
    assert extract_cache_busting_config({}) == dict.fromkeys(DOCUMENTED)
    picked = extract_cache_busting_config(
        {"model": {"context_length": 8192, "default": "gpt-x"}, "tools": {"registry_generation": 7}}
    )
    assert set(picked) == DOCUMENTED
    assert picked["model.context_length"] == 8192
    assert picked["tools.registry_generation"] == 7
    assert picked["model.max_tokens"] is None


def test_none_config_is_safe() -> None:
    assert extract_cache_busting_config(None) == dict.fromkeys(DOCUMENTED)


@pytest.mark.parametrize("broken", ["broken", 3, None, ["enabled"], True])
def test_a_section_that_is_not_a_mapping_counts_as_absent(broken: object) -> None:
    picked = extract_cache_busting_config({"compression": broken, "memory": {"provider": "x"}})
    assert picked["compression.enabled"] is None
    assert picked["compression.threshold"] is None
    assert picked["memory.provider"] == "x"


def full_config() -> dict[str, Any]:
    return {
        "model": {"context_length": 128000, "max_tokens": 4096, "default": "gpt-x"},
        "compression": {
            "enabled": True,
            "threshold": 0.8,
            "target_ratio": 0.5,
            "protect_last_n": 4,
        },
        "agent": {"disabled_toolsets": ["browser"], "max_turns": 60},
        "memory": {"provider": "builtin", "user_profile_enabled": True},
        "tools": {"registry_generation": 3},
        "display": {"theme": "dark"},
    }


def config_sig(config: dict[str, Any]) -> str:
    return sig(cache_keys=extract_cache_busting_config(config))


@pytest.mark.parametrize("section,key", CACHE_BUSTING_CONFIG_KEYS)
def test_editing_a_cache_busting_value_busts_the_signature(section: str, key: str) -> None:
    edited = full_config()
    edited[section][key] = "edited"
    assert config_sig(edited) != config_sig(full_config())


@pytest.mark.parametrize(
    "section,key",
    [
        ("model", "default"),
        ("agent", "max_turns"),
        ("memory", "user_profile_enabled"),
        ("display", "theme"),
    ],
)
def test_editing_any_other_value_keeps_the_signature(section: str, key: str) -> None:
    edited = full_config()
    edited[section][key] = "edited"
    assert config_sig(edited) == config_sig(full_config())


def test_extracted_values_do_not_alias_the_config() -> None:
    config = full_config()
    picked = extract_cache_busting_config(config)
    config["agent"]["disabled_toolsets"].append("terminal")
    assert picked["agent.disabled_toolsets"] == ["browser"]
