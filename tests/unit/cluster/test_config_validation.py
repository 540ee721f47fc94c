from __future__ import annotations

import json

import pytest

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
        {"mcp": {"github": {"env": {"GITHUB_TOKEN": "ghp_x"}}}},
        {"notes": "sk-proj-abcdefghijklmnopqrstuvwxyz"},
        {"model": {"apiKey": "abc"}},
        {"auth": {"accessToken": "abc"}},
        {"tls": {"privateKey": "abc"}},
        {"cache": {"url": "redis://:hunter2@redis:6379/0"}},
        {"mcp": {"x": {"command": "srv", "args": ["--port", "1", "--api-key=abcdefg123"]}}},
        {"mcp": {"x": {"command": "srv", "args": ["--token", "abcdefg123"]}}},
        {"mcp": {"x": {"command": "srv --password=abcdefg123"}}},
        {"extra": ["ghp_abcdefghijklmnopqrstuvwxyz0123456789"]},
        {"header": "Authorization: Bearer abcdefghijklmnopqrstuvwxyz"},
        # Issue 16: the shapes the check missed.
        {"notes": "sk-test-abcdefg123"},
        {"mcp": {"x": {"command": "mysql", "args": ["-u", "root", "-p", "abcdefg123"]}}},
        {"mcp": {"x": {"command": "mysql -u root -p abcdefg123"}}},
        {"mcp": {"x": {"command": "redis-cli", "args": ["--auth", "abcdefg123"]}}},
        {"mcp": {"x": {"command": "redis-cli --auth abcdefg123 ping"}}},
        {"mcp": {"x": {"command": "env PGPASS=abcdefg123 psql"}}},
        {"mcp": {"x": {"command": "psql", "env": {"PGPASS": "abcdefg123"}}}},
    ],
)
def test_secrets_are_rejected_with_a_pointer_to_the_environment(config: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as err:
        encode_config(config)
    message = str(err.value)
    assert "environment" in message and "not in Redis" in message
    # the secret value itself is never echoed back
    assert "sk-abc" not in message and "ghp_x" not in message and "abcdefghijklmnop" not in message
    assert "hunter2" not in message and "abcdefg123" not in message
    assert "reference the environment variable" in message


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
        {"mcp": {"x": {"command": "mkdir", "args": ["-p", "build"]}}},
        {"mcp": {"x": {"command": "mkdir -p /tmp/work/data2"}}},
        {"mcp": {"x": {"command": "ssh", "args": ["-p", "2222", "host"]}}},
        {"mcp": {"x": {"command": "docker run -p 8080:80 image"}}},
        {"mcp": {"x": {"command": "redis-cli", "args": ["--auth", "${REDIS_PASSWORD}"]}}},
        {"mcp": {"x": {"command": "env PGPASS=$PGPASS psql", "env": {"PWD": "/srv", "PGPASS": "${PGPASS}"}}}},
        {"mcp": {"x": {"command": "srv", "args": ["--port", "8080", "--verbose"]}}},
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
