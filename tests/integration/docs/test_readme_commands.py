"""Every shell command the README shows runs, as shown, against what it starts itself.

The commands come from the README's code blocks (``readme_commands``), in
order, plus the curl examples of its "Deploying" section and of
docker-compose.yml's header. Each is run by bash in a fresh directory with a
copy of ``deploy/``, with the README's fixed ports (Redis 6380, simulator
8199, gateway 8080) replaced by free ones, ``MY_KEY`` set to the compose
file's development key and ``OPENAI_API_KEY=anything`` (what the README
says to set). The servers it starts (``redis-server``, two workers, the
simulator, the gateway) are real processes, stopped at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from cluster.keys import Keyspace
from cluster.settings import ClusterSettings
from coordinator.status import check_health
from tests.conftest import free_port
from tests.integration.docs.readme_commands import (
    README,
    RULES,
    Command,
    Rule,
    readme_commands,
    rule_for,
    strip_comment,
)

pytestmark = pytest.mark.integration

ROOT = README.parent
README_PORTS = {"6380": "redis", "8199": "simulator", "8080": "gateway"}
DEV_KEY = "dev-key-change-me"


def deploy_examples() -> list[Command]:
    """The curl one-liners of README's "Deploying" and of docker-compose.yml's header."""
    readme = README.read_text(encoding="utf-8")
    deploying = readme[readme.index("## Deploying") :]
    deploying = deploying[: deploying.index("\n## ", 1)]
    found = [Command(c, "Deploying") for c in re.findall(r"`(curl [^`]+)`", deploying)]
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    block = re.search(r"^#   (curl .*?\\\n#\s+.*?)$", compose, re.M)
    assert block, "docker-compose.yml's header shows no curl example"
    found.append(Command(re.sub(r"\\\n#\s+", " ", block[1]), "docker-compose.yml"))
    return found


def test_every_command_of_the_readme_is_run_or_skipped_with_a_reason() -> None:
    commands = readme_commands()
    assert len(commands) > 30
    unknown = [c.text for c in commands if rule_for(c.text) is None]
    assert not unknown, f"README commands no rule knows (add to RULES): {unknown}"
    assert all(rule.reason for rule in RULES if rule.action == "skip")
    run = [c for c in commands if rule_for(c.text).action != "skip"]  # type: ignore[union-attr]
    assert len(run) >= 25


class Session:
    """Runs README commands in one directory and environment; owns what they start."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ports = {name: str(free_port()) for name in README_PORTS.values()}
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_CLUSTER_")}
        # The suite's choice of tool sandbox (conftest) still applies.
        env.update({k: v for k, v in os.environ.items() if k.startswith("AGENT_CLUSTER_SANDBOX")})
        env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            MY_KEY=DEV_KEY,
            OPENAI_API_KEY="anything",
            AGENT_CLUSTER_HOME=str(workdir / "home"),
            # The built-in "simulator" endpoint is the README's port 8199: the
            # workers declare it at the free port the simulator got instead.
            AGENT_CLUSTER_ENDPOINTS=(
                '{"simulator": {"provider": "openai", "base_url": '
                f'"http://127.0.0.1:{self.ports["simulator"]}/v1"}}}}'
            ),
        )
        self.env = env
        self.background: list[tuple[str, subprocess.Popen[bytes]]] = []
        shutil.copytree(ROOT / "deploy", workdir / "deploy")
        example = workdir / "deploy" / "cluster.example.yaml"
        example.write_text(self.substitute(example.read_text()))

    def substitute(self, text: str) -> str:
        for readme_port, name in README_PORTS.items():
            text = re.sub(rf"(?<![\d.]){readme_port}(?!\d)", self.ports[name], text)
        return text

    def prepare(self, command: Command, rule: Rule) -> str:
        text = self.substitute(command.text)
        for pattern, replacement in rule.rewrite:
            text = re.sub(pattern, replacement, text)
        return text

    def run(self, command: Command, rule: Rule) -> None:
        text = self.prepare(command, rule)
        where = f"README ({command.section}): {command.text}"
        if rule.action == "background":
            self.start(strip_comment(text).removesuffix("&").strip(), where)
            return
        exported = re.match(r"export (\w+)=", text)
        script = text + (f'\nprintf "%s" "${exported[1]}"' if exported else "")
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=self.workdir,
            env=self.env,
            input=rule.stdin,
            capture_output=True,
            text=True,
            timeout=45,
        )
        output = done.stdout + done.stderr
        assert done.returncode == rule.status, f"{where}\nexit {done.returncode}\n{output}"
        assert "Traceback" not in output, f"{where}\n{output}"
        assert rule.expect in output, f"{where}: no {rule.expect!r} in\n{output}"
        if text.startswith("curl "):
            assert done.stdout.strip() and '"error"' not in done.stdout, f"{where}\n{output}"
        if exported:
            self.env[exported[1]] = done.stdout

    def start(self, text: str, where: str) -> None:
        if any(text == started for started, _ in self.background):
            return  # a later section shows the same server again: it is running
        with (self.workdir / f"background-{len(self.background)}.log").open("wb") as log:
            process = subprocess.Popen(
                ["bash", "-c", f"exec {text}"],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.background.append((text, process))
        self.wait_until_serving(text, process, where)

    def wait_until_serving(self, text: str, process: subprocess.Popen[bytes], where: str) -> None:
        ready: Callable[[], bool]
        worker = re.match(r"agent-cluster worker --id (\S+)", text)
        if worker:
            ready = lambda: self.worker_healthy(worker[1])  # noqa: E731
        elif text.startswith("agent-cluster serve"):
            ready = lambda: self.answers(f"http://127.0.0.1:{self.ports['gateway']}/healthz")  # noqa: E731
        else:
            port = int(re.search(r"--port (\d+)", text)[1])  # type: ignore[index]
            ready = lambda: self.listening(port)  # noqa: E731
        deadline = time.monotonic() + 30
        while not ready():
            assert process.poll() is None, f"{where}: exited {process.returncode}"
            assert time.monotonic() < deadline, f"{where}: not serving after 30 s"
            time.sleep(0.1)

    def worker_healthy(self, worker_id: str) -> bool:
        client = redis.Redis(port=int(self.ports["redis"]))
        try:
            return check_health(client, Keyspace(ClusterSettings().namespace), worker_id).healthy
        finally:
            client.close()

    @staticmethod
    def answers(url: str) -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    @staticmethod
    def listening(port: int) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    def stop(self) -> None:
        for _text, process in reversed(self.background):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _text, process in reversed(self.background):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    if shutil.which("redis-server") is None and os.environ.get("CI") != "true":
        pytest.skip("redis-server is not installed (the README's commands start one)")
    made = Session(tmp_path)
    try:
        yield made
    finally:
        made.stop()


# Thirty-odd commands, each starting processes: more than the suite's default
# per-test timeout on a busy 2-core machine.
@pytest.mark.timeout(300)
def test_the_readme_commands_run_as_shown(session: Session) -> None:
    ran = 0
    for command in [*readme_commands(), *deploy_examples()]:
        rule = rule_for(command.text)
        assert rule is not None, command.text
        if rule.action == "skip":
            continue
        session.run(command, rule)
        ran += 1
    assert ran >= 27
