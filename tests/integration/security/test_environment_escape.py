"""A session's exported variables never reach what the worker starts on the host.

Each attack plants code in the session's workspace, exports a variable that
points a host-side launch at it (the workspace's host path is known: it is in
the sandbox's ``/proc/self/mountinfo``), then triggers a launch. Proof of an
escape is a file the planted code writes at a host path outside the
workspace, which nothing inside the sandbox can even see. Every attack runs
against a root worker and, where this machine allows, a worker running as
``nobody`` with bwrap's user namespace.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.tools.environment import remove_tree
from tests.integration.security.conftest import (
    REDIS_PASSWORD,
    UNPRIVILEGED_UID,
    Target,
    running_target,
    unprivileged_worker_problem,
)
from tests.sandbox_support import require_bwrap

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["root", "unprivileged"])
def worker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    require_bwrap()
    if request.param == "root":
        with running_target(tmp_path_factory.mktemp("escape")) as target:
            yield target
        return
    problem = unprivileged_worker_problem()
    if problem is not None:
        pytest.skip(problem)
    # pytest's own temporary directories are private to root: nobody needs its own.
    tmp = Path(tempfile.mkdtemp(prefix="ac-escape-"))
    try:
        tmp.chmod(0o755)
        with running_target(tmp, uid=UNPRIVILEGED_UID) as target:
            yield target
    finally:
        remove_tree(tmp)


def session() -> str:
    return f"escape-{uuid.uuid4().hex[:8]}"


def proof_path(target: Target) -> Path:
    """A host path outside every workspace, writable by the worker's user."""
    return target.home / f"pwned-{uuid.uuid4().hex[:8]}"


def run_process(target: Target, chat: str, command: str) -> str:
    """Start ``command`` with the process tool and return its poll once it has exited."""
    started = target.tool(chat, "process", action="start", command=command)
    assert "started p" in started, started
    proc_id = started.split("started ", 1)[1].split()[0]
    deadline = time.monotonic() + 30
    while True:
        polled = target.tool(chat, "process", action="poll", id=proc_id)
        if "exited" in polled or time.monotonic() > deadline:
            return polled
        time.sleep(0.1)


def test_bash_env_pointing_into_the_workspace_runs_nothing_on_the_host(worker: Target) -> None:
    chat = session()
    proof = proof_path(worker)
    planted = worker.sh(
        chat,
        f"printf 'id -u > {proof}\\n' > be.sh && "
        f"export BASH_ENV={worker.workspace(chat)}/be.sh && echo planted",
    )
    assert "planted" in planted
    polled = run_process(worker, chat, "echo job-ran")
    assert "job-ran" in polled and "exited (code 0)" in polled
    assert not proof.exists(), f"code ran on the host as uid {proof.read_text().strip()}"


def test_a_fake_bash_first_on_path_runs_nothing_on_the_host(worker: Target) -> None:
    chat = session()
    proof = proof_path(worker)
    planted = worker.sh(
        chat,
        "mkdir -p bin && "
        f"printf '#!/bin/sh\\nid -u > {proof}\\nexec /bin/bash \"$@\"\\n' > bin/bash && "
        f"chmod 755 bin/bash && export PATH={worker.workspace(chat)}/bin:$PATH && echo planted",
    )
    assert "planted" in planted
    polled = run_process(worker, chat, "echo job-ran")
    assert "job-ran" in polled and "exited (code 0)" in polled
    assert not proof.exists(), f"code ran on the host as uid {proof.read_text().strip()}"


def test_ld_preload_of_a_workspace_library_runs_nothing_on_the_host(worker: Target) -> None:
    chat = session()
    proof = proof_path(worker)
    source = (
        "#include <stdio.h>\n"
        "__attribute__((constructor)) static void escape(void) {\n"
        f'  FILE *f = fopen("{proof}", "w"); if (f) {{ fputs("escaped\\n", f); fclose(f); }}\n'
        "}\n"
    )
    planted = worker.sh(
        chat,
        f"cat > p.c <<'EOF'\n{source}EOF\n"
        "TMPDIR=/workspace gcc -shared -fPIC -o p.so p.c && "
        f"export LD_PRELOAD={worker.workspace(chat)}/p.so && echo planted",
    )
    assert "planted" in planted, planted
    worker.sh(chat, "true")
    run_process(worker, chat, "true")
    assert not proof.exists(), "the planted library's constructor ran on the host"


def test_exported_variables_still_apply_inside_the_sandbox(worker: Target) -> None:
    chat = session()
    worker.sh(chat, "export GREETING=hello-from-the-session PATH=/workspace/bin:$PATH")
    worker.sh(
        chat,
        "mkdir -p bin && printf '#!/bin/sh\\necho own-tool\\n' > bin/mytool && chmod 755 bin/mytool",
    )
    assert "hello-from-the-session" in worker.sh(chat, 'echo "$GREETING"')
    assert "own-tool" in worker.sh(chat, "mytool")
    polled = run_process(worker, chat, 'echo "$GREETING"; mytool')
    assert "hello-from-the-session" in polled and "own-tool" in polled


def test_sandbox_tmp_is_writable_and_gcc_works(worker: Target) -> None:
    reply = worker.sh(
        session(),
        "echo scratch > /tmp/x && cat /tmp/x && printf 'int main(void){return 0;}' > /tmp/t.c "
        "&& gcc -o t /tmp/t.c && ./t && echo compiled",
    )
    assert "scratch" in reply and "compiled" in reply, reply


def test_the_redis_password_from_the_url_file_is_redacted(worker: Target) -> None:
    """The worker read its Redis URL from a file, not its environment: it is still a secret."""
    reply = worker.sh(session(), f"echo {REDIS_PASSWORD}")
    assert REDIS_PASSWORD not in reply and "[redacted]" in reply
