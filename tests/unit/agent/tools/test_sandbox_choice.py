"""Which backend tools get, and what a host without bwrap answers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from agent.tools import ToolContext, ToolEnvironment, default_registry
from agent.tools.redaction import SecretRedactor
from agent.tools.sandbox_config import SandboxConfig, SandboxLimits
from cluster.errors import ConfigError


@pytest.fixture
def no_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH with bash and the basics but no bwrap, as on a fresh machine."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "env", "cat"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))


def run(env: ToolEnvironment, command: str) -> tuple[bool, str]:
    result = default_registry().dispatch("terminal", {"command": command}, ToolContext("t", env))
    return result.is_error, result.content


@pytest.mark.usefixtures("no_bwrap")
def test_without_bwrap_tools_are_refused_with_why_and_what_to_do(tmp_path: Path) -> None:
    env = ToolEnvironment.default(tmp_path / "home", sandbox=SandboxConfig(backend="bwrap"))
    failed, content = run(env, "echo should not run")
    assert failed
    assert "bwrap program is not installed" in content
    assert "apt-get install bubblewrap" in content and "AGENT_CLUSTER_SANDBOX=local" in content
    assert "should not run" not in content


@pytest.mark.usefixtures("no_bwrap")
def test_auto_falls_back_to_local_with_a_notice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Limits of their own: the notice is logged once per config, and this one is new.
    config = SandboxConfig(backend="auto", limits=SandboxLimits(processes=78))
    env = ToolEnvironment.default(tmp_path / "home", sandbox=config)
    assert "tools run unsandboxed (local)" in caplog.text
    failed, content = run(env, "echo ran locally")
    assert not failed and "ran locally" in content


def test_local_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ToolEnvironment.default(
        tmp_path, sandbox=SandboxConfig(backend="local", limits=SandboxLimits(processes=77))
    )
    assert "unsandboxed as the worker's user" in caplog.text


def test_settings_come_from_the_environment_and_are_validated() -> None:
    config = SandboxConfig.from_env(
        {
            "AGENT_CLUSTER_SANDBOX": "local",
            "AGENT_CLUSTER_SANDBOX_NETWORK": "host",
            "AGENT_CLUSTER_SANDBOX_ENV": "LANG, TZ",
            "AGENT_CLUSTER_SANDBOX_MEMORY_MB": "512",
        }
    )
    assert (config.backend, config.network, config.pass_env) == ("local", "host", ("LANG", "TZ"))
    assert config.limits.memory_bytes == 512 * 1024 * 1024
    assert SandboxConfig.from_env({}).backend == "bwrap"
    assert SandboxConfig.from_env({}).network == "none"
    for bad, word in (
        ({"AGENT_CLUSTER_SANDBOX": "docker"}, "AGENT_CLUSTER_SANDBOX"),
        ({"AGENT_CLUSTER_SANDBOX_NETWORK": "bridge"}, "NETWORK"),
        ({"AGENT_CLUSTER_SANDBOX_PROCESSES": "many"}, "PROCESSES"),
        ({"AGENT_CLUSTER_SANDBOX_CPU_SECONDS": "0"}, "CPU_SECONDS"),
        ({"AGENT_CLUSTER_SANDBOX_ENV": "OK,not-a-name"}, "not-a-name"),
    ):
        with pytest.raises(ConfigError, match=word):
            SandboxConfig.from_env(bad)


def test_redaction_covers_secret_named_variables_and_url_passwords() -> None:
    redactor = SecretRedactor.from_environ(
        {
            "OPENAI_API_KEY": "sk-test-0123456789",
            "GITHUB_TOKEN": "ghp_abcdefghij",
            "AGENT_CLUSTER_REDIS_URL": "redis://app:s3cr3t-pass@db:6379/0",
            "SHORT_KEY": "abc",
            "HOME": "/home/someone-with-a-long-name",
        }
    )
    text = redactor.redact(
        "key sk-test-0123456789 tok ghp_abcdefghij pw s3cr3t-pass abc "
        "/home/someone-with-a-long-name"
    )
    assert "sk-test" not in text and "ghp_" not in text and "s3cr3t" not in text
    assert text.count("[redacted]") == 3
    assert "abc" in text and "/home/someone-with-a-long-name" in text


def test_tool_results_are_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok-0123456789abcdef")
    env = ToolEnvironment.default(tmp_path, sandbox=SandboxConfig(backend="local"))
    failed, content = run(env, "echo tok-0123456789abcdef")
    assert not failed and "tok-0123456789abcdef" not in content and "[redacted]" in content
    assert os.environ["SOME_SERVICE_TOKEN"] == "tok-0123456789abcdef"


def test_redaction_covers_the_password_of_a_url_read_from_a_file() -> None:
    """The worker's Redis URL may come from AGENT_CLUSTER_REDIS_URL_FILE, not the environment."""
    url = "redis://:pw-from-a-file-0123@10.0.0.5:6379/0"
    redactor = SecretRedactor.from_environ({}, urls=[url, "redis://10.0.0.5:6379/0"])
    assert redactor.redact(f"url {url} alone pw-from-a-file-0123 host 10.0.0.5") == (
        "url [redacted] alone [redacted] host 10.0.0.5"
    )


def test_redaction_covers_a_sentinel_urls_own_sentinel_password() -> None:
    url = "redis+sentinel://10.0.0.5:26379,10.0.0.6:26379/svc?sentinel_password=sentinel-pw-0123"
    redactor = SecretRedactor.from_environ({}, urls=[url])
    assert redactor.redact("the sentinels take sentinel-pw-0123") == (
        "the sentinels take [redacted]"
    )
