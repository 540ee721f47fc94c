"""The admin API behind its bearer token: status, config, registry, drain."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.http.conftest import WORKERS, HttpCluster
from tests.support.gateway import API_KEY

pytestmark = pytest.mark.integration

YAML = "application/yaml"


def model_yaml(cluster: HttpCluster, max_iterations: int) -> str:
    return (
        f"model:\n  endpoint: sim\n  default: sim-gpt\nagent:\n  max_iterations: {max_iterations}\n"
    )


def test_admin_needs_the_admin_token(cluster: HttpCluster) -> None:
    with cluster.a.client(key=None) as nobody:
        assert nobody.get("/v1/admin/status").status_code == 401
    with cluster.a.client(key=API_KEY) as chat_key:  # an API key is not the admin token
        response = chat_key.get("/v1/admin/status")
        assert response.status_code == 401 and "admin token" in response.json()["error"]["message"]


def test_status_shows_the_workers(cluster: HttpCluster) -> None:
    with cluster.admin() as admin:
        status = admin.get("/v1/admin/status")
        assert status.status_code == 200, status.text
        assert {w["worker_id"] for w in status.json()["workers"]} >= set(WORKERS[:2])


def test_config_push_show_history_rollback(cluster: HttpCluster, session_key: str) -> None:
    with cluster.admin() as admin, cluster.b.client() as chat:
        before = admin.get("/v1/admin/config").json()["version"]
        pushed = admin.post(
            "/v1/admin/config?note=fewer+iterations",
            content=model_yaml(cluster, 4),
            headers={"Content-Type": YAML},
        )
        assert pushed.status_code == 200, pushed.text
        assert pushed.json()["version"] == before + 1
        assert pushed.json()["changes"] == ['+ agent: {"max_iterations": 4}']
        shown = cluster.b.client(key=None)
        shown.headers["Authorization"] = admin.headers["Authorization"]
        current = shown.get("/v1/admin/config").json()  # the other gateway sees it
        shown.close()
        assert (
            current["version"] == before + 1 and current["document"]["agent"]["max_iterations"] == 4
        )
        history = admin.get("/v1/admin/config/history?limit=2").json()["history"]
        assert history[0]["version"] == before + 1 and history[0]["note"] == "fewer iterations"
        assert history[0]["author"].startswith("http@")
        assert (
            chat.post(f"/v1/sessions/{session_key}/messages", json={"text": "still"}).status_code
            == 200
        )
        rolled = admin.post("/v1/admin/config/rollback", json={"version": before})
        assert rolled.status_code == 200 and rolled.json()["version"] == before + 2
        old = admin.get(f"/v1/admin/config?version={before}").json()["document"]
        assert admin.get("/v1/admin/config").json()["document"] == old


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        ("agent:\n  max_iterations: lots\n", YAML, 400, "agent.max_iterations"),
        ("model:\n  api_key: sk-abcdefabcdefabcdefabcdef\n", YAML, 400, "secret"),
        ("model: [unclosed\n", YAML, 400, "not valid YAML"),
        ("agent: {}", "image/png", 415, "application/yaml"),
    ],
)
def test_invalid_configs_change_nothing(
    cluster: HttpCluster, body: str, content_type: str, status: int, words: str
) -> None:
    with cluster.admin() as admin:
        before = admin.get("/v1/admin/config").json()
        response = admin.post(
            "/v1/admin/config", content=body, headers={"Content-Type": content_type}
        )
        assert response.status_code == status, response.text
        assert words in response.json()["error"]["message"]
        assert admin.get("/v1/admin/config").json() == before


def test_check_only_and_bad_versions(cluster: HttpCluster) -> None:
    with cluster.admin() as admin:
        before = admin.get("/v1/admin/config").json()["version"]
        checked = admin.post(
            "/v1/admin/config?check=1",
            content=model_yaml(cluster, 5),
            headers={"Content-Type": YAML},
        )
        assert checked.json() == {"valid": True}
        assert admin.get("/v1/admin/config").json()["version"] == before
        assert admin.get("/v1/admin/config?version=999999").status_code == 400
        assert admin.get("/v1/admin/config?version=abc").status_code == 400
        assert admin.post("/v1/admin/config/rollback", json={"version": "1"}).status_code == 400


def test_registry_bump(cluster: HttpCluster) -> None:
    with cluster.admin() as admin:
        first = admin.post("/v1/admin/registry/bump").json()["generation"]
        second = admin.post("/v1/admin/registry/bump", json={"reason": "test"}).json()["generation"]
        assert second == first + 1


def test_drain_a_worker_and_keep_serving(cluster: HttpCluster, session_key: str) -> None:
    with cluster.admin() as admin, cluster.a.client() as chat:
        unknown = admin.post("/v1/admin/workers/nobody/drain")
        assert unknown.status_code == 404 and "not registered" in unknown.json()["error"]["message"]
        assert admin.post("/v1/admin/workers/bad%20id/drain").status_code == 400
        assert admin.post("/v1/admin/workers/h3/drain", json={"timeout": -1}).status_code == 400
        drained = admin.post("/v1/admin/workers/h3/drain", json={"timeout": 5})
        assert drained.status_code == 202, drained.text
        deadline = time.monotonic() + 30
        while admin.get("/v1/admin/workers/h3/drain").json()["registered"]:
            assert time.monotonic() < deadline, "h3 did not leave"
            time.sleep(0.2)
        assert cluster.fleet.procs["h3"].wait(timeout=15) == 0
        for n in range(4):
            reply = chat.post(f"/v1/sessions/{session_key}-{n}/messages", json={"text": "hi"})
            assert reply.status_code == 200 and reply.json()["worker_id"] in ("h1", "h2")
        ready = httpx.get(f"{cluster.b.url}/readyz").json()
        assert ready == {"ready": True, "live_workers": 2, "waiting": 0, "max_waiting": 10000}


def test_an_empty_or_key_removing_push_is_refused_unless_confirmed(cluster: HttpCluster) -> None:
    """Issue 17.4 through the admin API: nothing is published without ?confirm_removals=1."""
    with cluster.admin() as admin:
        current = admin.get("/v1/admin/config").json()
        empty = admin.post(
            "/v1/admin/config", content="# nothing\n", headers={"Content-Type": YAML}
        )
        assert empty.status_code == 400
        assert empty.json()["error"]["message"].startswith(
            "request body is empty: publishing it would remove every key"
        )
        smaller = {"model": {"endpoint": "sim"}}
        refused = admin.post("/v1/admin/config", json=smaller)
        assert refused.status_code == 400
        message = refused.json()["error"]["message"]
        assert "model.default" in message and "?confirm_removals=1" in message
        assert admin.get("/v1/admin/config").json()["version"] == current["version"]
        confirmed = admin.post("/v1/admin/config?confirm_removals=1", json=smaller)
        assert confirmed.status_code == 200, confirmed.text
        assert '- model.default: "sim-gpt"' in confirmed.json()["changes"]
        restored = admin.post("/v1/admin/config", json=current["document"])  # only adds keys
        assert restored.status_code == 200, restored.text


# Issue 21.1: compression pushed by the admin API, reported in the replies.
COMPRESSING = """\
model:
  endpoint: sim
  default: sim-gpt
  context_length: 3000
compression:
  enabled: true
  threshold: 0.75
  target_ratio: 0.6
  protect_last_n: 1
"""
TEXT = "the museum opens at ten, the tram stop is two streets away, tickets are sold inside " * 3


def test_a_pushed_compression_config_compresses_a_long_session_and_the_reply_says_so(
    cluster: HttpCluster, session_key: str
) -> None:
    with cluster.admin() as admin, cluster.a.client() as chat:
        bad = admin.post(
            "/v1/admin/config",
            content=COMPRESSING.replace("threshold: 0.75", "threshold: high"),
            headers={"Content-Type": YAML},
        )
        assert bad.status_code == 400
        assert "compression.threshold must be a number in (0, 1], got 'high'" in bad.text
        before = admin.get("/v1/admin/config").json()["version"]
        pushed = admin.post("/v1/admin/config", content=COMPRESSING, headers={"Content-Type": YAML})
        assert pushed.status_code == 200, pushed.text
        try:
            replies = []
            for turn in range(12):
                sent = chat.post(
                    f"/v1/sessions/{session_key}/messages", json={"text": f"{turn}: {TEXT}"}
                )
                assert sent.status_code == 200, sent.text
                replies.append(sent.json())
                if replies[-1]["compressed"]:
                    break
            assert replies[-1]["compressed"] > 0, [r["usage"] for r in replies]
            assert replies[-1]["usage"]["api_calls"] == 2, "the summary call, then the turn's"
            assert all(r["compressed"] == 0 for r in replies[:-1])
        finally:
            rolled = admin.post("/v1/admin/config/rollback", json={"version": before})
            assert rolled.status_code == 200, rolled.text
