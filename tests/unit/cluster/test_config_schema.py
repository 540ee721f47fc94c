"""The config schema: what `agent-cluster config push` accepts, and errors with key path and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.config_diff import diff_configs
from cluster.config_schema import parse_config, schema_lines
from cluster.errors import ConfigError
from worker.cache.signature import CACHE_BUSTING_CONFIG_KEYS
from worker.profile import AgentProfile

EXAMPLE = Path(__file__).parents[3] / "deploy" / "cluster.example.yaml"


def refused(text: str) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(text, source="cluster.yaml")
    message = str(err.value)
    assert "\n" not in message, "one line"
    return message


def test_the_example_config_is_valid_and_workers_read_it() -> None:
    document = parse_config(EXAMPLE.read_text(), source=EXAMPLE.name)
    profile = AgentProfile.from_config(document, registry_generation=0)
    assert (profile.provider, profile.model) == ("openai", "sim-gpt")
    assert profile.base_url == "http://127.0.0.1:8199/v1"
    assert profile.api_key_env == "OPENAI_API_KEY"
    assert profile.toolsets == ("memory", "process", "terminal", "todo")


def test_an_empty_document_is_the_default_config() -> None:
    assert parse_config("", source="c.yaml") == {}
    assert AgentProfile.from_config({}, registry_generation=0).provider == "offline"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model:\n  default: m\n  provider: opena\n", "model.provider must be one of 'offline', 'openai', 'anthropic', got 'opena' (cluster.yaml line 3)"),
        ("compression:\n  enabled: true\n  threshold: high\n", "compression.threshold must be a number in (0, 1] or null, got 'high' (cluster.yaml line 3)"),
        ("compression:\n  threshold: 1.5\n", "compression.threshold must be a number in (0, 1] or null, got 1.5 (cluster.yaml line 2)"),
        ("agent:\n  max_iterations: 0\n", "agent.max_iterations must be a whole number in [1, 1000], got 0 (cluster.yaml line 2)"),
        ("agent:\n  max_iterations: true\n", "agent.max_iterations must be a whole number in [1, 1000], got True (cluster.yaml line 2)"),
        ("agent:\n  toolsets: [terminal, 3]\n", "agent.toolsets[1] must be a string (a toolset name), got 3 (cluster.yaml line 2)"),
        ("agent:\n  toolsets: terminal\n", "agent.toolsets must be a list of a string (a toolset name), got 'terminal' (cluster.yaml line 2)"),
        ("\n\nmodle:\n  default: m\n", "modle is not a known setting (known in the config: agent, compression, mcp_servers, memory, model, providers) (cluster.yaml line 3)"),
        ("model:\n  default: m\n  temprature: 1\n", "model.temprature is not a known setting"),
        ("model:\n  base_url: localhost:8199\n", "model.base_url must be a string (an http:// or https:// URL) or null, got 'localhost:8199' (cluster.yaml line 2)"),
        ("providers:\n  azure:\n    api_key_env: AZ\n", "providers.azure: unknown name, expected one of openai, anthropic (cluster.yaml line 2)"),
        ("providers:\n  openai:\n    api_key_env: 'my key'\n", "providers.openai.api_key_env must be a string (an environment variable name such as OPENAI_API_KEY), got 'my key' (cluster.yaml line 3)"),
        ("mcp_servers:\n  files:\n    args: [x]\n", "mcp_servers.files.command is missing"),
        ("mcp_servers:\n  files:\n    command: python\n    env:\n      PORT: 80\n", "mcp_servers.files.env.PORT must be a string, got 80; quote it (cluster.yaml line 5)"),
        ("mcp_servers:\n  files:\n    command: python\n    url: http://x\n", "mcp_servers.files.url is not a known setting"),
        ("tools:\n  registry_generation: 3\n", "tools is not a known setting"),
        ("model: [1, 2]\n", "model must be a mapping, got list (cluster.yaml line 1)"),
        ("- a\n- b\n", "config must be a mapping (a YAML/JSON object), got list"),
    ],
)
def test_a_mistake_is_named_by_key_path_and_line(text: str, expected: str) -> None:
    assert expected in refused(text)


def test_a_key_given_twice_is_refused_with_its_line() -> None:
    assert refused("model:\n  default: a\n  default: b\n") == "model.default is given twice (line 3); keep one"


def test_a_yaml_syntax_error_names_the_line() -> None:
    assert refused("model:\n  default: [a\n").startswith("cluster.yaml line 3 is not valid YAML")


def test_a_secret_is_refused_as_a_secret_before_the_schema_sees_an_unknown_key() -> None:
    message = refused("model:\n  default: m\n  api_key: sk-proj-abcdefghijklmnopqrstuvwx\n")
    assert "model.api_key" in message and "worker's environment" in message
    message = refused("agent:\n  ephemeral_system_prompt: 'use Bearer abcdefghijklmnopqrstuvwxyz'\n")
    assert "credential" in message


def test_every_documented_key_the_workers_read_is_accepted() -> None:
    paths = {path for path, _, _ in schema_lines()}
    for section, key in CACHE_BUSTING_CONFIG_KEYS:
        if section != "tools":  # the cluster's registry generation, not a config value
            assert f"{section}.{key}" in paths
    for path in ("model.default", "model.provider", "model.base_url", "model.api_mode",
                 "agent.toolsets", "agent.disabled_toolsets", "agent.max_iterations",
                 "agent.ephemeral_system_prompt", "providers.<name>.api_key_env",
                 "mcp_servers.<name>.command"):
        assert path in paths


def test_provider_settings_name_the_key_variable_and_a_default_endpoint() -> None:
    document = parse_config(
        "model:\n  provider: anthropic\n  default: claude\nproviders:\n  anthropic:\n"
        "    api_key_env: TEAM_ANTHROPIC_KEY\n    base_url: http://127.0.0.1:8199\n",
        source="c.yaml",
    )
    profile = AgentProfile.from_config(document, registry_generation=0)
    assert profile.base_url == "http://127.0.0.1:8199"
    assert profile.api_key({"TEAM_ANTHROPIC_KEY": "k1", "ANTHROPIC_API_KEY": "k2"}) == "k1"
    other = AgentProfile.from_config({**document, "providers": {}}, registry_generation=0)
    assert other.signature({"TEAM_ANTHROPIC_KEY": "k1", "ANTHROPIC_API_KEY": "k2"}) != (
        profile.signature({"TEAM_ANTHROPIC_KEY": "k1", "ANTHROPIC_API_KEY": "k2"})
    ), "a different key variable is a different agent"


def test_diff_names_added_removed_and_changed_keys() -> None:
    before = {"model": {"default": "a", "provider": "offline"}, "agent": {"max_iterations": 3}}
    after = {"model": {"default": "b", "provider": "offline"}, "memory": {"provider": "x"}}
    assert [c.line() for c in diff_configs(before, after)] == [
        '- agent: {"max_iterations": 3}',
        '+ memory: {"provider": "x"}',
        '~ model.default: "a" -> "b"',
    ]
    assert diff_configs(before, before) == []


def test_a_missing_key_variable_is_named_and_never_replaced_by_another() -> None:
    document = parse_config(
        "model: {provider: openai, default: m}\nproviders: {openai: {api_key_env: TEAM_KEY}}\n",
        source="c.yaml",
    )
    profile = AgentProfile.from_config(document, registry_generation=0)
    with pytest.raises(ConfigError, match=r"set TEAM_KEY in every worker's environment"):
        profile.signature({"OPENAI_API_KEY": "a-different-key"})
    assert AgentProfile.from_config({}, registry_generation=0).api_key({}) is None
