"""``agent-cluster demo --platform telegram``: two gateways, one poller, a killed one handing on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.demo_platform import CHAT_MESSAGES

pytestmark = pytest.mark.integration


def test_platform_demo_tells_the_handover_and_prints_the_transcript(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_CLUSTER_", "OPENAI_"))}
    env["AGENT_CLUSTER_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "demo", "--platform", "telegram"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for step in range(1, 6):
        assert re.search(rf"^{step}\. ", out, re.M), f"step {step} missing:\n{out}"
    first = re.search(r"^1\. .*; (gw-[ab]) holds its lease", out, re.M)
    assert first is not None, out
    killed = re.search(r"^3\. (gw-[ab]) is stopped without giving its lease up", out, re.M)
    took = re.search(r"^4\. (gw-[ab]) took the lease over ([0-9.]+)s later", out, re.M)
    assert killed is not None and took is not None, out
    assert killed.group(1) == first.group(1) != took.group(1), "the other gateway polls on"
    assert float(took.group(2)) < 10
    assert (
        f"{len(CHAT_MESSAGES)} replies for {len(CHAT_MESSAGES)} messages, none lost, none twice"
        in out
    )
    transcript = [
        line.strip() for line in out.split("\n5. ")[1].splitlines() if "<" in line or ">" in line
    ]
    expected = []
    for text in CHAT_MESSAGES:
        expected += [f"user > {text}", f"bot  < echo: {text}"]
    assert [line.split("   (")[0] for line in transcript] == expected
    assert re.search(r"updates left unconfirmed: 0", out)
    assert re.search(r"seen by a live poller: 0\)", out), "no 409 storm"
