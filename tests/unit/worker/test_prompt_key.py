"""The frozen prompt's key (issue 21.6): what builds the prompt, not the agent signature."""

from __future__ import annotations

from typing import Any

import pytest

from worker.profile import AgentProfile

BASE: dict[str, Any] = {
    "model": {"default": "sim-gpt", "endpoint": "simulator", "max_tokens": 1024},
    "agent": {"toolsets": ["memory", "terminal"]},
}


def profile(config: dict[str, Any], generation: int = 0) -> AgentProfile:
    return AgentProfile.from_config(config, registry_generation=generation)


def edited(section: str, **values: Any) -> dict[str, Any]:
    return {**BASE, section: {**BASE.get(section, {}), **values}}


@pytest.mark.parametrize(
    "config",
    [
        edited("model", max_tokens=2048),
        edited("model", endpoint="offline"),
        edited("model", context_length=8000),
        {**edited("model", context_length=8000), "compression": {"enabled": True}},
        edited("agent", reasoning_effort="high"),
    ],
)
def test_a_push_of_a_request_parameter_rebuilds_the_agent_but_keeps_the_prompt(
    config: dict[str, Any],
) -> None:
    before, after = profile(BASE), profile(config)
    assert after.busting_digest() != before.busting_digest(), "the push rebuilds agents"
    assert after.prompt_key() == before.prompt_key(), "on the stored frozen prompt"


@pytest.mark.parametrize(
    ("config", "generation"),
    [
        (edited("model", default="sim-gpt-2"), 0),
        (edited("agent", ephemeral_system_prompt="Be brief."), 0),
        (edited("agent", toolsets=["memory"]), 0),
        (edited("agent", disabled_toolsets=["terminal"]), 0),
        (BASE, 1),  # agent-cluster mcp reload: new tool schemas
    ],
)
def test_a_push_of_what_builds_the_prompt_gives_a_new_key(
    config: dict[str, Any], generation: int
) -> None:
    assert profile(config, generation).prompt_key() != profile(BASE).prompt_key()
