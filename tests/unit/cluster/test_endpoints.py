"""Provider endpoints a worker declares in its settings (the config only names one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.endpoints import NO_KEY, Endpoint
from cluster.errors import ConfigError
from cluster.settings import ClusterSettings
from cluster.settings_sources import load_settings


def test_endpoints_come_from_the_environment_as_yaml_and_overlay_the_builtins() -> None:
    settings = ClusterSettings.from_env(
        {
            "AGENT_CLUSTER_ENDPOINTS": (
                '{sim: {provider: openai, base_url: "http://10.0.0.5:8199/v1"}, '
                'simulator: {provider: openai, base_url: "http://simulator:8199/v1"}}'
            )
        }
    )
    table = settings.endpoint_table()
    assert table.get("sim") == Endpoint("sim", "openai", "http://10.0.0.5:8199/v1")
    assert table.get("simulator").base_url == "http://simulator:8199/v1", "a declared name wins"
    assert table.get("openai").api_key_env == "OPENAI_API_KEY"
    assert table.get("sim").api_key({"OPENAI_API_KEY": "real"}) == NO_KEY
    assert "sim" in repr(settings)


def test_endpoints_come_from_the_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "worker.yaml"
    path.write_text(
        "endpoints:\n  team:\n    provider: anthropic\n    base_url: https://api.anthropic.com\n"
        "    api_key_env: TEAM_ANTHROPIC_KEY\n"
    )
    settings = load_settings(environ={}, settings_file=str(path))
    assert settings.endpoint_table().get("team").api_key({"TEAM_ANTHROPIC_KEY": "k"}) == "k"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "{x: {provider: openai, base_url: 'http://u:pw@h/v1'}}",
            "AGENT_CLUSTER_ENDPOINTS entry x: base_url must be an http:// or https:// URL without "
            "user or password",
        ),
        (
            "{x: {provider: openai, base_url: 'http://h/v1', api_key_env: "
            "AGENT_CLUSTER_REDIS_URL}}",
            "AGENT_CLUSTER_ENDPOINTS entry x: api_key_env AGENT_CLUSTER_REDIS_URL is one of the "
            "cluster's own settings",
        ),
        (
            "{x: {provider: openai, base_url: 'http://h/v1', api_key_env: 'my key'}}",
            "AGENT_CLUSTER_ENDPOINTS entry x: api_key_env must be an environment variable name",
        ),
        (
            "{x: {provider: gemini, base_url: 'http://h'}}",
            "AGENT_CLUSTER_ENDPOINTS entry x: provider must be one of offline, openai, anthropic, "
            "got 'gemini'",
        ),
        (
            "{x: {provider: openai, url: 'http://h'}}",
            "AGENT_CLUSTER_ENDPOINTS entry x: unknown key 'url'",
        ),
        (
            "[a, b]",
            "AGENT_CLUSTER_ENDPOINTS must be a mapping of name to {provider, base_url, "
            "api_key_env}",
        ),
        ("{x: [", "AGENT_CLUSTER_ENDPOINTS is not valid YAML"),
    ],
)
def test_a_bad_endpoint_is_one_line_naming_the_variable_and_entry(
    value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        ClusterSettings.from_env({"AGENT_CLUSTER_ENDPOINTS": value})
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


def test_an_unset_key_variable_is_named() -> None:
    endpoint = Endpoint("team", "openai", "https://api.openai.com/v1", "TEAM_KEY")
    with pytest.raises(ConfigError, match="endpoint 'team' sends the key in TEAM_KEY: set it"):
        endpoint.api_key({"OPENAI_API_KEY": "other"})
