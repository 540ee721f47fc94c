"""API keys held as SHA-256 digests only; the admin token compared in constant time."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cluster.errors import ConfigError
from coordinator.http.auth import Credentials, key_digest


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_keys_are_accepted_by_their_digest_from_env_and_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# team keys\n{sha('file-key')}  # ops\n\n")
    credentials = Credentials.from_env(
        {
            "AGENT_CLUSTER_API_KEY_SHA256": f"{sha('env-key')}, {sha('other').upper()}",
            "AGENT_CLUSTER_API_KEY_SHA256_FILE": str(path),
        }
    )
    assert credentials.api_key_digests == {sha("env-key"), sha("other"), sha("file-key")}
    assert all(credentials.tenant_for(k) == "default" for k in ("env-key", "other", "file-key"))
    assert credentials.tenant_for("env-ke") is None and credentials.tenant_for(None) is None
    assert credentials.admin_digest is None and not credentials.admin_ok("anything")


def test_keys_sharing_a_prefix_are_different_keys() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.a"
    credentials = Credentials(api_keys={key_digest(jwt): "default"})
    assert credentials.tenant_for(jwt) == "default"
    assert credentials.tenant_for("eyJhbGciOiJIUzI1NiJ9.b") is None


def test_a_key_instead_of_a_digest_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="not a SHA-256 hex digest") as caught:
        Credentials.from_env({"AGENT_CLUSTER_API_KEY_SHA256": "sk-live-secret-key"})
    assert "sk-live-secret-key" not in str(caught.value)


def test_unreadable_digest_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        Credentials.from_env({"AGENT_CLUSTER_API_KEY_SHA256_FILE": str(tmp_path / "missing")})


def test_admin_token_and_anonymous() -> None:
    credentials = Credentials.from_env({"AGENT_CLUSTER_ADMIN_TOKEN": "tok-123"})
    assert credentials.admin_ok("tok-123") and not credentials.admin_ok("tok-12")
    assert credentials.admin_digest == sha("tok-123")  # the token itself is not kept
    assert credentials.tenant_for("x") is None
    assert Credentials(anonymous=True).tenant_for(None) == "default"


def test_an_entry_names_the_tenant_of_its_key_and_a_bare_digest_is_the_default_tenant(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys"
    path.write_text(f"acme:{sha('acme-key')}  # acme's key\nbeta-2:{sha('beta-key')}\n")
    credentials = Credentials.from_env(
        {
            "AGENT_CLUSTER_API_KEY_SHA256": sha("old-key"),
            "AGENT_CLUSTER_API_KEY_SHA256_FILE": str(path),
        }
    )
    assert credentials.tenant_for("acme-key") == "acme"
    assert credentials.tenant_for("beta-key") == "beta-2"
    assert credentials.tenant_for("old-key") == "default"
    assert credentials.tenant_for("acme-ke") is None and credentials.tenant_for(None) is None
    assert Credentials(anonymous=True).tenant_for(None) == "default"


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        (f"Acme:{sha('k')}", "tenant before ':'"),
        (f"a/b:{sha('k')}", "tenant before ':'"),
        (f"acme:{sha('k')},beta:{sha('k')}", "already configured for tenant 'acme'"),
        ("acme:sk-live-secret-key", "not a SHA-256 hex digest"),
    ],
)
def test_a_bad_tenant_entry_is_refused_in_one_line_without_echoing_it(
    entry: str, error: str
) -> None:
    with pytest.raises(ConfigError, match=error) as caught:
        Credentials.from_env({"AGENT_CLUSTER_API_KEY_SHA256": entry})
    assert "sk-live" not in str(caught.value) and "\n" not in str(caught.value)
