"""Tenant-scoped session keys are one-to-one; limits and usage kept in Redis (fakeredis + Lua)."""

from __future__ import annotations

import fakeredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.errors import ConfigError, InvalidMessage
from cluster.keys import Keyspace
from cluster.tenants import (
    DEFAULT_TENANT,
    TenantLimits,
    TenantStore,
    client_name,
    limits_by_tenant,
    scoped_key,
    tenant_of,
)

TENANTS = st.one_of(st.just(DEFAULT_TENANT), st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,31}\Z"))
NAMES = st.text(min_size=1, max_size=40).filter(lambda n: not n.startswith("@"))


@given(TENANTS, NAMES, TENANTS, NAMES)
def test_two_tenant_and_name_pairs_never_share_a_session_key(
    t1: str, n1: str, t2: str, n2: str
) -> None:
    k1, k2 = scoped_key(t1, n1), scoped_key(t2, n2)
    assert (tenant_of(k1), client_name(k1)) == (t1, n1)
    assert (k1 == k2) == ((t1, n1) == (t2, n2))


def test_a_name_shaped_like_another_tenants_key_is_refused() -> None:
    assert scoped_key("acme", "chat/1") == "@acme/chat/1"
    assert scoped_key(DEFAULT_TENANT, "chat/1") == "chat/1"
    for forged in ("@beta/chat", "@beta", "@"):
        with pytest.raises(InvalidMessage, match="must not start with '@'"):
            scoped_key("acme", forged)
    with pytest.raises(InvalidMessage, match="tenant name"):
        scoped_key("Acme", "chat")


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


@pytest.fixture
def store(client: fakeredis.FakeRedis) -> TenantStore:
    return TenantStore(client, Keyspace("u"))


def test_requests_per_minute_refuse_with_the_wait_until_the_next_one(store: TenantStore) -> None:
    limits = TenantLimits(requests_per_minute=3)
    assert all(store.admit("acme", limits, job_id=None, lifetime=60).allowed for _ in range(3))
    refused = store.admit("acme", limits, job_id=None, lifetime=60)
    assert not refused.allowed and refused.limit == "requests_per_minute"
    assert 19 < refused.retry_after <= 20  # one request per 20 s once the burst is spent
    assert store.admit("beta", limits, job_id=None, lifetime=60).allowed  # its own count


def test_turns_in_flight_count_job_ids_once_and_a_released_turn_frees_its_place(
    store: TenantStore,
) -> None:
    limits = TenantLimits(turns_in_flight=1)
    assert store.admit("acme", limits, job_id="j1", lifetime=60).allowed
    assert store.admit("acme", limits, job_id="j1", lifetime=60).allowed  # a resubmission
    refused = store.admit("acme", limits, job_id="j2", lifetime=60)
    assert (refused.allowed, refused.limit, refused.retry_after) == (False, "turns_in_flight", 1.0)
    store.turn_answered("@acme/chat", "j1", usage=None, cost=0.0)
    assert store.admit("acme", limits, job_id="j2", lifetime=60).allowed


def test_a_turn_nobody_released_expires_so_a_dead_worker_leaks_no_place(
    client: fakeredis.FakeRedis, store: TenantStore
) -> None:
    # A turn admitted long ago whose worker died with its job: its expiry has passed.
    client.zadd(Keyspace("u").tenant_inflight("acme"), {"lost-job": 1})
    assert store.admit("acme", TenantLimits(turns_in_flight=1), job_id="j", lifetime=60).allowed


def test_an_answered_turn_adds_its_usage_to_its_sessions_tenant(store: TenantStore) -> None:
    usage = {"input_tokens": 10, "output_tokens": 4, "cache_read_tokens": 90, "api_calls": 1}
    store.turn_answered("@acme/chat", "j1", usage=usage, cost=0.25)
    store.turn_answered("@acme/other", "j2", usage=usage, cost=0.25)
    store.turn_answered("plain", "j3", usage={"output_tokens": 1}, cost=0.0)
    store.turn_answered("@acme/chat", "j4", usage=None, cost=0.0)  # an error reply adds nothing
    found = {t.tenant: t for t in store.usage()}
    assert set(found) == {"acme", DEFAULT_TENANT}
    acme = found["acme"]
    assert (acme.turns, acme.cost_usd) == (2, 0.5)
    assert acme.tokens == {
        "input_tokens": 20,
        "cache_read_tokens": 180,
        "cache_write_tokens": 0,
        "output_tokens": 8,
    }
    assert found[DEFAULT_TENANT].turns == 1


def test_per_tenant_limits_parse_and_a_bad_entry_is_named() -> None:
    assert limits_by_tenant(" acme=600/8, trial=30/0 ,") == {
        "acme": TenantLimits(600, 8),
        "trial": TenantLimits(30, 0),
    }
    for bad in ("acme=600", "acme=-1/2", "Acme=1/1", "acme=x/1"):
        with pytest.raises(ConfigError, match="tenant_limits entry 1 must be TENANT="):
            limits_by_tenant(bad)
