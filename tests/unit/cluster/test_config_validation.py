from __future__ import annotations

import json

import pytest

from cluster.config_schema import parse_config
from cluster.errors import ConfigError, PayloadTooLarge
from cluster.versions import encode_config, is_secret_key


@pytest.mark.parametrize(
    "name",
    [
        "api_key",
        "API_KEY",
        "apikey",
        "openai_api_key",
        "github_token",
        "token",
        "password",
        "db_password",
        "secret",
        "client_secret",
        "private_key",
        "aws_access_key_id",
        "credentials",
        "Api-Key",
        "apiKey",
        "accessToken",
        "privateKey",
        "clientSecret",
        "refreshToken",
        "AWS_SECRET_ACCESS_KEY",
        "dbPassword",
        "passphrase",
        "authorization",
        "x-api-key",
        "PGPASS",
        "DB_PASS",
        "MYSQL_PWD",
        "REDISCLI_AUTH",
        "auth",
    ],
)
def test_secret_like_names(name: str) -> None:
    assert is_secret_key(name)


@pytest.mark.parametrize(
    "name",
    [
        "max_tokens",
        "cache_keys",
        "model",
        "context_length",
        "tokenizer",
        "registry_generation",
        "protect_last_n",
        "keyboard",
        "maxTokens",
        "cacheKeys",
        "monkey",
        "keys",
        "PWD",
        "author",
        "compass",
        "passes",
    ],
)
def test_ordinary_names(name: str) -> None:
    assert not is_secret_key(name)


@pytest.mark.parametrize(
    "config",
    [
        {"model": {"api_key": "sk-abc"}},
        {"providers": [{"name": "x", "auth_token": "abc"}]},
        {"db": {"password": "pw"}},
        {"mcp_servers": {"github": {"env": {"GITHUB_TOKEN": "ghp_x"}}}},
        {"notes": "sk-proj-abcdefghijklmnopqrstuvwxyz"},
        {"model": {"apiKey": "abc"}},
        {"auth": {"accessToken": "abc"}},
        {"tls": {"privateKey": "abc"}},
        {"cache": {"url": "redis://:hunter2@redis:6379/0"}},
        {"mcp_servers": {"x": {"command": "srv", "args": ["--port", "1", "--api-key=abcdefg123"]}}},
        {"mcp_servers": {"x": {"command": "srv", "args": ["--token", "abcdefg123"]}}},
        {"mcp_servers": {"x": {"command": "srv --password=abcdefg123"}}},
        {"extra": ["ghp_abcdefghijklmnopqrstuvwxyz0123456789"]},
        {"header": "Authorization: Bearer abcdefghijklmnopqrstuvwxyz"},
        # Issue 16: the shapes the check missed.
        {"notes": "sk-test-abcdefg123"},
        {"mcp_servers": {"x": {"command": "mysql", "args": ["-u", "root", "-p", "abcdefg123"]}}},
        {"mcp_servers": {"x": {"command": "mysql -u root -p abcdefg123"}}},
        {"mcp_servers": {"x": {"command": "redis-cli", "args": ["--auth", "abcdefg123"]}}},
        {"mcp_servers": {"x": {"command": "redis-cli --auth abcdefg123 ping"}}},
        {"mcp_servers": {"x": {"command": "env PGPASS=abcdefg123 psql"}}},
        {"mcp_servers": {"x": {"command": "psql", "env": {"PGPASS": "abcdefg123"}}}},
    ],
)
def test_secrets_are_rejected_with_a_pointer_to_the_environment(config: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as err:
        encode_config(config)
    message = str(err.value)
    assert "environment" in message and "never go to Redis" in message
    # the secret value itself is never echoed back
    assert "sk-abc" not in message and "ghp_x" not in message and "abcdefghijklmnop" not in message
    assert "hunter2" not in message and "abcdefg123" not in message
    if "mcp_servers" in config:
        assert '"${GITHUB_TOKEN}"' in message


def test_environment_references_are_accepted_where_secrets_are_not() -> None:
    config = {
        "mcp": {
            "github": {
                "command": "gh-mcp",
                "args": ["--token", "${GITHUB_TOKEN}", "--api-key=$API_KEY"],
                "env": {"GITHUB_TOKEN": "${GITHUB_TOKEN}"},
            }
        },
        "model": {"max_tokens": 1000, "apiKey": None},
    }
    assert json.loads(encode_config(config)) == config


@pytest.mark.parametrize(
    "config",
    [
        {"mcp_servers": {"x": {"command": "mkdir", "args": ["-p", "build"]}}},
        {"mcp_servers": {"x": {"command": "mkdir -p /tmp/work/data2"}}},
        {"mcp_servers": {"x": {"command": "ssh", "args": ["-p", "2222", "host"]}}},
        {"mcp_servers": {"x": {"command": "docker run -p 8080:80 image"}}},
        {"mcp_servers": {"x": {"command": "redis-cli", "args": ["--auth", "${REDIS_PASSWORD}"]}}},
        {
            "mcp_servers": {
                "x": {
                    "command": "env PGPASS=$PGPASS psql",
                    "env": {"PWD": "/srv", "PGPASS": "${PGPASS}"},
                }
            }
        },
        {"mcp_servers": {"x": {"command": "srv", "args": ["--port", "8080", "--verbose"]}}},
        {"agent": {"ephemeral_system_prompt": "Tasks: skim the desk-notes, then ask-questions."}},
        {"model": {"default": "gpt-4.1", "endpoint": "sim-east"}},
    ],
)
def test_ordinary_values_are_not_taken_for_secrets(config: dict[str, object]) -> None:
    assert json.loads(encode_config(config)) == config


def test_error_names_the_path_of_the_secret() -> None:
    with pytest.raises(ConfigError, match=r"providers\[0\]\.auth_token"):
        encode_config({"providers": [{"auth_token": "abc"}]})


def test_null_or_boolean_secret_named_keys_hold_no_secret() -> None:
    assert json.loads(encode_config({"model": {"api_key": None, "use_api_key": True}}))


def test_valid_config_round_trips_as_json() -> None:
    config = {
        "model": {"name": "m", "context_length": 8192, "max_tokens": 1024},
        "compression": {"enabled": True, "threshold": 0.8},
        "agent": {"disabled_toolsets": ["browser"]},
    }
    assert json.loads(encode_config(config)) == config


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        (["not", "a", "mapping"], "mapping"),
        (None, "mapping"),
        ({"x": float("nan")}, "finite"),
        ({"x": {1: "a"}}, "non-string key"),
        ({"x": {1, 2}}, "JSON data"),
        ({"x": b"bytes"}, "JSON data"),
    ],
)
def test_non_json_safe_configs_are_rejected(config: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        encode_config(config)


def test_size_limit() -> None:
    with pytest.raises(PayloadTooLarge, match="1000 bytes"):
        encode_config({"blob": "x" * 2000}, max_bytes=1000)


def test_depth_limit() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(40):
        child: dict[str, object] = {}
        node["n"] = child
        node = child
    with pytest.raises(ConfigError, match="deeper"):
        encode_config(deep)


@pytest.mark.parametrize(
    ("document", "line", "hint"),
    [
        (
            "model:\n  endpoint: openai\n  api_key: sk-abcdefghijklmnopqrstuvwx\n",
            3,
            "model.endpoint",
        ),
        (
            "mcp_servers:\n  gh:\n    command: gh\n    env:\n      GITHUB_TOKEN: "
            "ghp_abcdefghijklmnopqrstuvwxyz0123\n",
            5,
            '"${GITHUB_TOKEN}"',
        ),
        ("mcp_servers:\n  r:\n    command: redis-cli\n    args: [--auth, abcdefg123]\n", 4, "env"),
    ],
)
def test_a_refused_secret_names_its_yaml_line_and_where_that_kind_of_secret_belongs(
    document: str, line: int, hint: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(document, source="cluster.yaml")
    message = str(err.value)
    assert f"(cluster.yaml line {line})" in message and hint in message
    if "api_key" in document:  # a provider key is no MCP matter
        assert "MCP" not in message and "${" not in message
