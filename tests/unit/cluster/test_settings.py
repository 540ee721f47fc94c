from __future__ import annotations

from pathlib import Path

import pytest

from cluster.connection import connect
from cluster.errors import ConfigError
from cluster.settings import URL_FILE_ENV, ClusterSettings, read_url_file, redact_url


def test_defaults_are_valid() -> None:
    s = ClusterSettings()
    assert s.namespace == "ac"
    assert s.heartbeat_interval == 1.5 and s.heartbeat_ttl == 5.0
    assert s.max_message_bytes == 256 * 1024


def test_from_env_reads_prefixed_variables_and_converts_types() -> None:
    s = ClusterSettings.from_env(
        {
            "AGENT_CLUSTER_REDIS_URL": "redis://h:6380/2",
            "AGENT_CLUSTER_NAMESPACE": "prod",
            "AGENT_CLUSTER_HEARTBEAT_TTL": "9.5",
            "AGENT_CLUSTER_MAX_MESSAGE_BYTES": "1024",
            "UNRELATED": "x",
        }
    )
    assert s.redis_url == "redis://h:6380/2"
    assert s.namespace == "prod"
    assert s.heartbeat_ttl == 9.5
    assert s.max_message_bytes == 1024


def test_bad_env_value_names_the_variable_the_value_and_the_expectation() -> None:
    with pytest.raises(ConfigError) as err:
        ClusterSettings.from_env({"AGENT_CLUSTER_HEARTBEAT_TTL": "soon"})
    message = str(err.value)
    assert "AGENT_CLUSTER_HEARTBEAT_TTL" in message and "'soon'" in message and "number" in message


def test_range_errors_from_env_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="AGENT_CLUSTER_LEASE_TTL"):
        ClusterSettings.from_env({"AGENT_CLUSTER_LEASE_TTL": "-1"})


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"heartbeat_ttl": 0}, "heartbeat_ttl"),
        ({"heartbeat_interval": 2.0, "heartbeat_ttl": 3.0}, "twice"),
        ({"lease_ttl": float("nan")}, "lease_ttl"),
        ({"max_message_bytes": 1.5}, "max_message_bytes"),
        ({"max_message_bytes": True}, "max_message_bytes"),
        ({"namespace": "a:b"}, "namespace"),
        ({"namespace": ""}, "namespace"),
        ({"redis_url": "http://x"}, "redis_url"),
        ({"redis_url": 5}, "redis_url"),
        ({"no_such_setting": 1}, "no_such_setting"),
    ],
)
def test_from_mapping_rejects_bad_values(values: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        ClusterSettings.from_mapping(values)


def test_from_mapping_accepts_strings_and_numbers() -> None:
    s = ClusterSettings.from_mapping(
        {"lease_ttl": "45", "reply_ttl": 60, "max_config_bytes": "2048"}
    )
    assert s.lease_ttl == 45.0 and s.reply_ttl == 60.0 and s.max_config_bytes == 2048


def test_from_mapping_rejects_a_non_mapping() -> None:
    with pytest.raises(ConfigError, match="mapping"):
        ClusterSettings.from_mapping(["redis_url"])  # type: ignore[arg-type]


def test_password_never_appears_in_repr_str_or_errors() -> None:
    s = ClusterSettings(redis_url="redis://app:hunter2secret@db.internal:6380/1")
    assert "hunter2secret" not in repr(s)
    assert "hunter2secret" not in str(s)
    assert s.redacted_url() == "redis://app:***@db.internal:6380/1"
    with pytest.raises(ConfigError) as err:
        ClusterSettings(redis_url="http://app:hunter2secret@db.internal")
    assert "hunter2secret" not in str(err.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("rediss://u:p%40ss@h/0?ssl_cert_reqs=none", "rediss://u:***@h/0?ssl_cert_reqs=none"),
        ("fakeredis://local", "fakeredis://local"),
        # Malformed: passwords with / ? # @ that were not percent-encoded.
        ("redis://u:pa/ss@h:1/0", "redis://u:***@h:1/0"),
        ("redis://:p?w#x@h", "redis://:***@h"),
        ("redis://:p@ss@h/0", "redis://:***@h/0"),
        ("redis://onlysecret@h", "redis://***@h"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize("password", ["pa/ss", "p?ss", "p#ss", "p@ss", "s3cr/et?x#y"])
def test_a_malformed_password_never_shows_in_errors(password: str) -> None:
    url = f"redis://user:{password}@db.internal:6379/0"
    assert password not in redact_url(url) and "***" in redact_url(url)
    if password == "p@ss":  # an @ alone still parses: the host is the part after the last @
        assert "***" in repr(ClusterSettings(redis_url=url))
    else:  # a raw / ? # is refused, saying what to do
        with pytest.raises(ConfigError) as refused:
            ClusterSettings(redis_url=url)
        assert password not in str(refused.value) and "percent-encode" in str(refused.value)
    with pytest.raises(ConfigError) as err:
        connect(f"redis://user:{password}@db.internal:notaport/0")
    assert password not in str(err.value) and "percent-encode" in str(err.value)


def test_the_url_can_come_from_a_file(tmp_path: Path) -> None:
    url_file = tmp_path / "redis-url"
    url_file.write_text("redis://app:from-a-file@db:6379/2\n")
    settings = ClusterSettings.from_env({URL_FILE_ENV: str(url_file)})
    assert settings.redis_url == "redis://app:from-a-file@db:6379/2"
    assert "from-a-file" not in repr(settings)
    direct = ClusterSettings.from_env(
        {URL_FILE_ENV: str(url_file), "AGENT_CLUSTER_REDIS_URL": "redis://other:6379/0"}
    )
    assert direct.redis_url == "redis://other:6379/0"
    with pytest.raises(ConfigError, match="cannot read the Redis URL file"):
        read_url_file(tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_url_file(tmp_path / "empty")


def test_settings_are_frozen() -> None:
    s = ClusterSettings()
    with pytest.raises(AttributeError):
        s.namespace = "x"  # type: ignore[misc]
