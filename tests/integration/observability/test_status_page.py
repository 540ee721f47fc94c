"""The status page in headless Chromium (Debian's ``chromium``): it draws the
cluster's workers, follows a drain live and lists the events; a screenshot is
saved as a test artifact (and copied to docs/status-page.png by hand)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from cluster.connection import connect
from cluster.keys import Keyspace
from coordinator.admin import drain_worker
from tests.integration.observability.conftest import ObservedCluster

pytestmark = pytest.mark.integration

SCREENSHOT_ENV = "AGENT_CLUSTER_STATUS_SCREENSHOT"
"""Set to a path to also copy the screenshot there (how docs/status-page.png is made)."""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed; .ci/run must install it (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium) to load the status page")


def _browse(url: str, tmp: Path, *, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran (and a screenshot), from a fresh headless Chromium."""
    args = [
        _chromium(),
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        "--window-size=1280,820",
        "--virtual-time-budget=4000",  # let the first fetches of status.json land
    ]
    if screenshot is not None:
        args.append(f"--screenshot={screenshot}")
    else:
        args.append("--dump-dom")
    done = subprocess.run([*args, url], capture_output=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout.decode(errors="replace")


def _worker_states(dom: str) -> dict[str, str]:
    """Worker id -> state of the cards drawn (the page's own script source excluded)."""
    found = re.findall(r'<g class="worker" data-worker="([^"$]+)" data-state="([^"$]+)"', dom)
    return dict(found)


def _send(url: str, session: str, text: str) -> dict[str, object]:
    response = httpx.post(f"{url}/v1/sessions/{session}/messages", json={"text": text}, timeout=60)
    assert response.status_code == 200, response.text
    reply: dict[str, object] = response.json()
    return reply


def test_the_status_page_shows_the_cluster_and_a_drain(
    observed: ObservedCluster, tmp_path: Path
) -> None:
    page = f"{observed.gateway_url}/status"
    owners = {
        f"page-{i}": str(_send(observed.gateway_url, f"page-{i}", "hello")["worker_id"])
        for i in range(6)
    }
    for session in owners:
        _send(observed.gateway_url, session, "and again")

    dom = _browse(page, tmp_path)
    assert 'data-loaded="1"' in dom, dom[-3000:]
    assert _worker_states(dom) == {"m1": "active", "m2": "active", "m3": "active"}
    assert "config v1 published by test" in dom

    # A turn that takes seconds keeps the drained worker draining while we look.
    victim = owners["page-0"]
    observed.sim.set_latency(ttft=6.0)
    answered: list[dict[str, object]] = []
    sender = threading.Thread(
        target=lambda: answered.append(_send(observed.gateway_url, "page-0", "take your time")),
        daemon=True,
    )
    sender.start()
    time.sleep(1.0)  # the slow turn is running on its owner
    client = connect(observed.redis_url)
    try:
        drain_worker(client, Keyspace(observed.namespace), victim)
    finally:
        client.close()

    # The drained worker's own readiness probe says so too (a kubelet takes it out).
    deadline = time.monotonic() + 5
    while (
        ready := httpx.get(observed.worker_url(victim, "/readyz"), timeout=5)
    ).status_code != 503:
        assert time.monotonic() < deadline, ready.text
        time.sleep(0.1)
    assert "draining" in ready.text
    assert httpx.get(observed.worker_url(victim, "/livez"), timeout=5).status_code == 200

    shot = tmp_path / "status-page.png"
    dom = _browse(page, tmp_path)
    states = _worker_states(dom)
    assert states[victim] == "draining", states
    assert sorted(w for w, s in states.items() if s == "active") == sorted(
        {"m1", "m2", "m3"} - {victim}
    )
    assert f"drain of {victim} requested" in dom
    _browse(page, tmp_path, screenshot=shot)
    assert shot.stat().st_size > 10_000
    copy_to = os.environ.get(SCREENSHOT_ENV)
    if copy_to:
        shutil.copyfile(shot, copy_to)

    sender.join(timeout=60)
    assert answered and answered[0]["worker_id"] == victim  # the running turn finished there
    deadline = time.monotonic() + 20
    while True:
        dom = _browse(page, tmp_path)
        if victim not in _worker_states(dom):
            break
        assert time.monotonic() < deadline, "the drained worker never left the page"
        time.sleep(0.5)
    assert f"{victim} drained and left" in dom
