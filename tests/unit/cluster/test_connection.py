from __future__ import annotations

import uuid

import pytest
import redis

from cluster.connection import blocking_client, connect, drop_embedded_server
from cluster.errors import ConfigError
from cluster.sentinel_url import parse_sentinel_url
from cluster.settings import ClusterSettings, redact_url


def test_embedded_clients_of_one_name_share_data_and_names_are_isolated() -> None:
    name = f"test-{uuid.uuid4().hex}"
    other = f"test-{uuid.uuid4().hex}"
    a, b, c = (
        connect(f"fakeredis://{name}"),
        connect(f"fakeredis://{name}"),
        connect(f"fakeredis://{other}"),
    )
    try:
        a.set("k", b"v")
        assert b.get("k") == b"v"
        assert c.get("k") is None
    finally:
        for client in (a, b, c):
            client.close()
        assert drop_embedded_server(name) and drop_embedded_server(other)


def test_embedded_decode_responses() -> None:
    name = f"test-{uuid.uuid4().hex}"
    client = connect(f"fakeredis://{name}", decode_responses=True)
    try:
        client.set("k", "v")
        assert client.get("k") == "v"
    finally:
        client.close()
        drop_embedded_server(name)


def test_url_credentials_db_and_timeout_reach_the_connection() -> None:
    client = connect("redis://app:s3cret@db.example:6390/4", socket_timeout=2.5)
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("db.example", 6390, 4)
        assert (kwargs["username"], kwargs["password"]) == ("app", "s3cret")
        assert kwargs["socket_timeout"] == 2.5
    finally:
        client.close()


def test_tls_url_and_ca_file() -> None:
    client = connect(
        "rediss://:pw@db.example:6380/0", ssl_ca_certs="/etc/ca.pem", ssl_cert_reqs="required"
    )
    try:
        pool = client.connection_pool
        assert issubclass(pool.connection_class, redis.SSLConnection)
        assert pool.connection_kwargs["ssl_ca_certs"] == "/etc/ca.pem"
    finally:
        client.close()


def test_tls_options_in_the_query_string() -> None:
    client = connect("rediss://db.example/0?ssl_ca_certs=/etc/ca.pem")
    try:
        assert client.connection_pool.connection_kwargs["ssl_ca_certs"] == "/etc/ca.pem"
    finally:
        client.close()


def test_tls_options_without_rediss_are_an_error() -> None:
    with pytest.raises(ConfigError, match="rediss://"):
        connect("redis://h/0", ssl_ca_certs="/etc/ca.pem")


@pytest.mark.parametrize("url", ["http://u:topsecret@h/0", "nonsense", ""])
def test_bad_urls_fail_without_leaking_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        connect(url)
    assert "topsecret" not in str(err.value)


def test_blocking_client_outwaits_its_block_time() -> None:
    client = blocking_client("redis://h/0", block_seconds=30)
    try:
        assert client.connection_pool.connection_kwargs["socket_timeout"] > 30
    finally:
        client.close()


@pytest.mark.parametrize(
    ("url", "char"),
    [
        ("redis://:pa/ss@redis.internal:6379/0", "/"),
        ("redis://:pa@ss/word@redis.internal:6379/0", "/"),  # parsed as host "ss", port 6379
        ("redis://app:p#ss@redis.internal:6379/0", "#"),
        ("rediss://:pa?ss@redis.internal:6380/0", "?"),
    ],
)
def test_an_unescaped_separator_in_the_password_says_to_percent_encode(url: str, char: str) -> None:
    """Issue 17.11: the client connected to a host taken from the password ("ss:6379")."""
    with pytest.raises(ConfigError) as err:
        connect(url)
    message = str(err.value)
    assert f"holds an unescaped {char!r}" in message and "percent-encode" in message
    assert "redis.internal" in message and "ss@" not in message and "\n" not in message
    with pytest.raises(ConfigError) as from_env:
        ClusterSettings.from_env({"AGENT_CLUSTER_REDIS_URL": url})
    assert str(from_env.value).startswith("AGENT_CLUSTER_REDIS_URL is malformed: the password in ")
    password = url.split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)[1]
    escape = {"/": "%2F", "#": "%23", "?": "%3F", "@": "%40"}
    encoded = url.replace(password, "".join(escape.get(c, c) for c in password))
    client = connect(encoded)
    kwargs = client.connection_pool.connection_kwargs
    client.close()
    assert (kwargs["host"], kwargs["password"]) == ("redis.internal", password)


def test_a_sentinel_url_names_sentinels_service_db_and_both_credentials() -> None:
    url = (
        "rediss+sentinel://app:pw%2F1@s1.example:26379,s2.example:26380,s3.example/cache/3"
        "?sentinel_password=sentpw&ssl_ca_certs=/etc/ca.pem"
    )
    target = parse_sentinel_url(url, shown=redact_url(url))
    assert target.sentinels == (
        ("s1.example", 26379),
        ("s2.example", 26380),
        ("s3.example", 26379),
    )
    assert (target.service, target.db, target.tls) == ("cache", 3, True)
    assert (target.username, target.password, target.sentinel_password) == ("app", "pw/1", "sentpw")
    assert target.tls_options == {"ssl_ca_certs": "/etc/ca.pem"}
    assert "pw" not in repr(target) and "sentpw" not in repr(target)


def test_a_sentinel_client_asks_the_named_sentinels_with_their_own_password() -> None:
    client = connect("redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/svc/2?sentinel_password=sp")
    try:
        pool = client.connection_pool
        assert pool.service_name == "svc"
        assert (pool.connection_kwargs["password"], pool.connection_kwargs["db"]) == ("pw", 2)
        sentinels = pool.sentinel_manager.sentinels
        assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
        assert {s.connection_pool.connection_kwargs["password"] for s in sentinels} == {"sp"}
    finally:
        client.close()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel:///svc", "names no Sentinel"),
        ("redis+sentinel://h:26379", "SERVICE_NAME"),
        ("redis+sentinel://h:26379/svc/zero", "db must be a number"),
        ("redis+sentinel://h:99999/svc", "host:port"),
        ("redis+sentinel://h/svc?ssl_ca_certs=/ca.pem", r"need a rediss\+sentinel://"),
        ("redis+sentinel://h/svc?sentinel_pasword=x", "unknown option"),
    ],
)
def test_bad_sentinel_urls_say_what_to_write(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        ClusterSettings(redis_url=url)


def test_a_sentinel_password_in_the_query_is_masked_everywhere() -> None:
    url = "redis+sentinel://u:mainpw@h1:1,h2:2/svc?sentinel_password=sentinelpw"
    shown = ClusterSettings(redis_url=url).redacted_url()
    assert "mainpw" not in shown and "sentinelpw" not in shown
    assert shown == "redis+sentinel://u:***@h1:1,h2:2/svc?sentinel_password=***"
    assert "sentinelpw" not in repr(ClusterSettings(redis_url=url))
    with pytest.raises(ConfigError) as err:
        ClusterSettings(redis_url=url + "&bogus=1")
    assert "sentinelpw" not in str(err.value) and "mainpw" not in str(err.value)
