"""The config schema: what `agent-cluster config push` accepts; errors with key path and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.config_diff import check_removals, diff_configs, removed_paths
from cluster.config_schema import parse_config, schema_lines
from cluster.endpoints import NO_KEY, EndpointTable, parse_endpoints
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
    assert profile.max_tokens == 1024
    assert profile.toolsets == ("memory", "process", "terminal", "todo")


def test_an_empty_document_is_refused_it_would_remove_every_key() -> None:
    for text in ("", "# only a comment\n", "{}\n"):
        assert refused(text).startswith(
            "cluster.yaml is empty: publishing it would remove every key"
        )
    assert AgentProfile.from_config({}, registry_generation=0).provider == "offline"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "model:\n  default: m\n  endpoint: 'my sim'\n",
            "model.endpoint must be a string (an endpoint name such as openai), got 'my sim' "
            "(cluster.yaml line 3)",
        ),
        (
            "model:\n  max_tokens: 0\n",
            "model.max_tokens must be a whole number >= 1 or null, got 0 (cluster.yaml line 2)",
        ),
        (
            "agent:\n  max_iterations: 0\n",
            "agent.max_iterations must be a whole number in [1, 1000], got 0 (cluster.yaml line 2)",
        ),
        (
            "agent:\n  max_iterations: true\n",
            "agent.max_iterations must be a whole number in [1, 1000], got True (cluster.yaml line "
            "2)",
        ),
        (
            "agent:\n  toolsets: [terminal, 3]\n",
            "agent.toolsets[1] must be a string (a toolset name), got 3 (cluster.yaml line 2)",
        ),
        (
            "agent:\n  toolsets: terminal\n",
            "agent.toolsets must be a list of a string (a toolset name), got 'terminal' "
            "(cluster.yaml line 2)",
        ),
        (
            "\n\nmodle:\n  default: m\n",
            "modle is not a known setting (known in the config: agent, compression, mcp_servers, "
            "memory, model, providers) (cluster.yaml line 3)",
        ),
        ("model:\n  default: m\n  temprature: 1\n", "model.temprature is not a known setting"),
        ("mcp_servers:\n  files:\n    args: [x]\n", "mcp_servers.files.command is missing"),
        (
            "mcp_servers:\n  files:\n    command: python\n    env:\n      PORT: 80\n",
            "mcp_servers.files.env.PORT must be a string, got 80; quote it (cluster.yaml line 5)",
        ),
        (
            "mcp_servers:\n  files:\n    command: python\n    url: http://x\n",
            "mcp_servers.files.url is not a known setting",
        ),
        ("tools:\n  registry_generation: 3\n", "tools is not a known setting"),
        ("model: [1, 2]\n", "model must be a mapping, got list (cluster.yaml line 1)"),
        ("- a\n- b\n", "config must be a mapping (a YAML/JSON object), got list"),
    ],
)
def test_a_mistake_is_named_by_key_path_and_line(text: str, expected: str) -> None:
    assert expected in refused(text)


def test_a_key_given_twice_is_refused_with_its_line() -> None:
    assert (
        refused("model:\n  default: a\n  default: b\n")
        == "model.default is given twice (line 3); keep one"
    )


def test_a_yaml_syntax_error_names_the_line() -> None:
    assert refused("model:\n  default: [a\n").startswith("cluster.yaml line 3 is not valid YAML")


def test_a_secret_is_refused_as_a_secret_before_the_schema_sees_an_unknown_key() -> None:
    message = refused("model:\n  default: m\n  api_key: sk-proj-abcdefghijklmnopqrstuvwx\n")
    assert "model.api_key" in message and "worker's environment" in message
    message = refused(
        "agent:\n  ephemeral_system_prompt: 'use Bearer abcdefghijklmnopqrstuvwxyz'\n"
    )
    assert "credential" in message


def test_every_documented_key_the_workers_read_is_accepted_and_the_others_refused() -> None:
    lines = {path: expected for path, expected, _ in schema_lines()}
    for section, key in CACHE_BUSTING_CONFIG_KEYS:
        if section != "tools":  # the cluster's registry generation, not a config value
            assert f"{section}.{key}" in lines or lines.get(section) == "refused"
    for path in (
        "model.default",
        "model.endpoint",
        "model.api_mode",
        "model.max_tokens",
        "agent.toolsets",
        "agent.disabled_toolsets",
        "agent.max_iterations",
        "agent.ephemeral_system_prompt",
        "mcp_servers.<name>.command",
        "model.context_length",
        "compression.enabled",
        "compression.threshold",
        "compression.target_ratio",
        "compression.protect_last_n",
    ):
        assert lines[path] != "refused"
    for path in (
        "model.base_url",
        "model.provider",
        "providers",
        "memory",
        "model.fallback.base_url",
    ):
        assert lines[path] == "refused"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("model:\n  endpoint: openai\n  base_url: http://127.0.0.1:9999/v1\n", "model.base_url"),
        ("model:\n  provider: anthropic\n", "model.provider"),
        ("providers:\n  anthropic:\n    api_key_env: ANTHROPIC_API_KEY\n", "providers"),
        (
            "model:\n  fallback:\n    default: m\n    base_url: http://127.0.0.1:9/v1\n",
            "model.fallback.base_url",
        ),
        (
            "model:\n  fallback:\n    default: m\n    api_key_env: AGENT_CLUSTER_REDIS_URL\n",
            "model.fallback.api_key_env",
        ),
    ],
)
def test_a_push_cannot_name_a_url_or_a_key_variable(text: str, key: str) -> None:
    """The exfiltration shape (a URL and a key variable) is refused in one line naming the key."""
    message = refused(text)
    assert message.startswith(
        f"{key} is refused: endpoints (provider, URL, key variable) are declared"
    )
    assert "name one with model.endpoint" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("memory:\n  provider: null\n", "memory"),
    ],
)
def test_keys_the_agent_does_not_act_on_are_refused_not_stored(text: str, key: str) -> None:
    assert refused(text).startswith(
        f"{key} is refused: not supported yet (the agent does not act on it)"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "compression:\n  threshold: high\n",
            "compression.threshold must be a number in (0, 1], got 'high' (c.yaml line 2)",
        ),
        (
            "compression:\n  threshold: 0\n",
            "compression.threshold must be a number in (0, 1], got 0 (c.yaml line 2)",
        ),
        (
            "compression:\n  target_ratio: 1.5\n",
            "compression.target_ratio must be a number in (0, 1], got 1.5 (c.yaml line 2)",
        ),
        (
            "compression:\n  protect_last_n: -1\n",
            "compression.protect_last_n must be a whole number in [0, 1000], got -1 "
            "(c.yaml line 2)",
        ),
        (
            "model:\n  context_length: lots\n",
            "model.context_length must be a whole number >= 1 or null, got 'lots' (c.yaml line 2)",
        ),
        (
            "compression:\n  enabled: true\n",
            "compression.enabled needs model.context_length (the model's context window in "
            "tokens), which is not set (c.yaml line 2)",
        ),
        (
            "model:\n  context_length: 8000\ncompression:\n  enabled: true\n"
            "  threshold: 0.5\n  target_ratio: 0.6\n",
            "compression.target_ratio (0.6) must be below compression.threshold (0.5): a "
            "compressed prompt past the threshold would be compressed again at every turn "
            "(c.yaml line 6)",
        ),
    ],
)
def test_bad_compression_settings_are_refused_saying_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="c.yaml")
    assert str(caught.value) == message


def test_compression_settings_reach_the_agent_profile_with_their_defaults() -> None:
    document = parse_config(
        "model:\n  context_length: 8000\ncompression:\n  enabled: true\n  threshold: 0.5\n",
        source="c.yaml",
    )
    compression = AgentProfile.from_config(document, registry_generation=0).compression
    assert compression is not None
    assert (compression.context_length, compression.threshold) == (8000, 0.5)
    assert (compression.target_ratio, compression.protect_last_n) == (0.4, 2)
    assert compression.trigger_tokens == 4000
    off = parse_config("model:\n  context_length: 8000\n", source="c.yaml")
    assert AgentProfile.from_config(off, registry_generation=0).compression is None


def test_the_endpoint_comes_from_the_worker_and_its_key_from_the_variable_it_declares() -> None:
    document = parse_config("model:\n  endpoint: team\n  default: claude\n", source="c.yaml")
    table = EndpointTable(
        parse_endpoints(
            {
                "team": {
                    "provider": "anthropic",
                    "base_url": "http://127.0.0.1:8199",
                    "api_key_env": "TEAM_ANTHROPIC_KEY",
                }
            }
        )
    )
    profile = AgentProfile.from_config(document, registry_generation=0, endpoints=table)
    assert (profile.provider, profile.base_url) == ("anthropic", "http://127.0.0.1:8199")
    assert profile.api_key({"TEAM_ANTHROPIC_KEY": "k1", "ANTHROPIC_API_KEY": "k2"}) == "k1"
    builtin = AgentProfile.from_config({"model": {"endpoint": "anthropic"}}, registry_generation=0)
    assert builtin.base_url == "https://api.anthropic.com"
    assert builtin.api_key({"TEAM_ANTHROPIC_KEY": "k1", "ANTHROPIC_API_KEY": "k2"}) == "k2"
    simulator = AgentProfile.from_config(
        {"model": {"endpoint": "simulator"}}, registry_generation=0
    )
    assert simulator.api_key({"OPENAI_API_KEY": "real"}) == NO_KEY, (
        "no real key to a keyless endpoint"
    )


def test_an_endpoint_the_worker_does_not_declare_fails_the_turn_naming_it() -> None:
    profile = AgentProfile.from_config({"model": {"endpoint": "elsewhere"}}, registry_generation=0)
    with pytest.raises(
        ConfigError, match=r"model.endpoint 'elsewhere' is not declared on this worker"
    ):
        profile.signature({"OPENAI_API_KEY": "k"})


def test_a_document_of_the_retired_shape_is_not_run_on_a_guessed_endpoint() -> None:
    old = {
        "model": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1"},
        "providers": {"openai": {"api_key_env": "ANTHROPIC_API_KEY"}},
    }
    profile = AgentProfile.from_config(old, registry_generation=0)
    with pytest.raises(
        ConfigError, match=r"sets provider, base_url, providers, which workers no longer read"
    ):
        profile.api_key({"ANTHROPIC_API_KEY": "k"})


def test_max_tokens_busts_the_agent_and_reaches_the_profile() -> None:
    one = AgentProfile.from_config({"model": {"max_tokens": 1024}}, registry_generation=0)
    two = AgentProfile.from_config({"model": {"max_tokens": 2048}}, registry_generation=0)
    assert (one.max_tokens, two.max_tokens) == (1024, 2048)
    assert one.signature({}) != two.signature({}) and one.busting_digest() != two.busting_digest()


def test_diff_names_added_removed_and_changed_keys() -> None:
    before = {"model": {"default": "a", "provider": "offline"}, "agent": {"max_iterations": 3}}
    after = {"model": {"default": "b", "provider": "offline"}, "memory": {"provider": "x"}}
    assert [c.line() for c in diff_configs(before, after)] == [
        '- agent: {"max_iterations": 3}',
        '+ memory: {"provider": "x"}',
        '~ model.default: "a" -> "b"',
    ]
    assert diff_configs(before, before) == []


def test_removing_keys_needs_a_confirmation_naming_them() -> None:
    before = {"model": {"endpoint": "openai", "default": "m"}, "agent": {"max_iterations": 3}}
    assert removed_paths(before, {"model": {"endpoint": "openai"}}) == ["agent", "model.default"]
    with pytest.raises(ConfigError) as err:
        check_removals(before, {"model": {"endpoint": "openai"}}, confirm="--yes")
    assert str(err.value) == (
        "this push removes 2 key(s) of the current config: agent, model.default; they would "
        "fall back to their defaults: add --yes if that is intended"
    )
    check_removals(before, {**before, "memory": None}, confirm="--yes")  # only adds: fine
    check_removals({}, before, confirm="--yes")


def test_a_missing_key_variable_is_named_and_never_replaced_by_another() -> None:
    table = EndpointTable(
        parse_endpoints(
            {
                "team": {
                    "provider": "openai",
                    "base_url": "https://api.openai.com/v1",
                    "api_key_env": "TEAM_KEY",
                }
            }
        )
    )
    document = parse_config("model: {endpoint: team, default: m}\n", source="c.yaml")
    profile = AgentProfile.from_config(document, registry_generation=0, endpoints=table)
    with pytest.raises(
        ConfigError,
        match=r"endpoint 'team' sends the key in TEAM_KEY: set it in every worker's environment",
    ):
        profile.signature({"OPENAI_API_KEY": "a-different-key"})
    assert AgentProfile.from_config({}, registry_generation=0).api_key({}) is None
