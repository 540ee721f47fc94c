"""Property-based fuzzing of the whole HTTP API: no input makes the gateway answer 5xx.

Hypothesis draws methods, paths (with arbitrary session keys, message ids and
worker ids), bodies (garbage bytes, arbitrary JSON, nearly valid requests),
content types, accept headers, Last-Event-IDs, credentials and query strings,
and sends them to a gateway serving a live cluster. Every answer must be a
2xx or a 4xx with a JSON error saying what was wrong; no bug may be logged.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.http.conftest import HttpCluster
from tests.support.gateway import ADMIN_TOKEN, API_KEY

pytestmark = pytest.mark.integration

ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
header_text = ascii_text.map(lambda s: s.strip() or "x")  # what HTTP lets a header carry
any_text = st.text(max_size=60)
segment = st.one_of(
    st.sampled_from(["chat-1", "a/b", "x" * 300, "", "%", "..", "w1"]), any_text
).map(lambda s: quote(s, safe="") or "k")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
message_bodies = st.fixed_dictionaries(
    {
        "text": st.one_of(
            any_text, st.sampled_from(["hi", "/stop", "/new", "!sh echo x"]), json_values
        )
    },
    optional={
        "message_id": st.one_of(ascii_text, json_values),
        "strategy": st.one_of(
            st.sampled_from(["enqueue", "interrupt", "reject", "rollback", "stop", "x"]),
            json_values,
        ),
        "stream": st.one_of(st.booleans(), json_values),
        "timeout": st.one_of(st.floats(), st.integers(), json_values),
        "user_id": st.one_of(any_text, st.integers(), json_values),
        "platform": json_values,
        "reasoning": json_values,
        "colour": json_values,
    },
)
chat_bodies = st.fixed_dictionaries(
    {},
    optional={
        "messages": st.one_of(
            json_values,
            st.lists(
                st.fixed_dictionaries(
                    {
                        "role": st.sampled_from(["user", "assistant", "system", 3]),
                        "content": st.one_of(any_text, json_values),
                    }
                ),
                max_size=3,
            ),
        ),
        "model": json_values,
        "stream": st.one_of(st.booleans(), json_values),
        "user": st.one_of(any_text, json_values),
        "stream_options": json_values,
    },
)


def encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


bodies = st.one_of(
    st.none(),
    st.binary(max_size=200),
    json_values.map(encode),
    message_bodies.map(encode),
    chat_bodies.map(encode),
    any_text.map(lambda s: s.encode("utf-8", "surrogatepass")),
)
paths = st.one_of(
    st.tuples(segment).map(lambda p: f"/v1/sessions/{p[0]}/messages"),
    st.tuples(segment).map(lambda p: f"/v1/sessions/{p[0]}"),
    st.tuples(segment).map(lambda p: f"/v1/sessions/{p[0]}/interrupt"),
    st.tuples(segment, segment).map(lambda p: f"/v1/sessions/{p[0]}/messages/{p[1]}/events"),
    st.tuples(segment).map(lambda p: f"/v1/admin/workers/{p[0]}/drain"),
    st.sampled_from(
        [
            "/v1/chat/completions",
            "/v1/admin/status",
            "/v1/admin/config",
            "/v1/admin/config/history",
            "/v1/admin/config/rollback",
            "/v1/admin/registry/bump",
            "/healthz",
            "/readyz",
            "/openapi.json",
            "/v1/sessions/",
            "/",
        ]
    ),
)
queries = st.dictionaries(
    st.sampled_from(["version", "limit", "check", "note", "author"]), any_text, max_size=2
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": st.sampled_from(
            [
                "application/json",
                "application/yaml",
                "text/plain",
                "image/png",
                "application/json; charset=utf-8",
                "",
            ]
        ),
        "Accept": st.sampled_from(["text/event-stream", "application/json", "*/*"]),
        "Last-Event-ID": st.one_of(
            header_text, st.sampled_from(["0-0", "1-1", "99999999999999999999-0"])
        ),
        "Authorization": st.one_of(
            st.sampled_from([f"Bearer {API_KEY}", f"Bearer {ADMIN_TOKEN}", "Bearer", "Basic abc"]),
            header_text,
        ),
        "X-Session-Key": header_text,
        "X-Message-Id": header_text,
        "X-Strategy": header_text,
    },
)


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"]),
    path=paths,
    query=queries,
    body=bodies,
    head=headers,
)
def test_no_input_makes_the_gateway_fail(
    cluster: HttpCluster,
    method: str,
    path: str,
    query: dict[str, str],
    body: bytes | None,
    head: dict[str, str],
) -> None:
    with httpx.Client(base_url=cluster.a.url, timeout=60) as client:
        with client.stream(method, path, params=query, content=body, headers=head) as response:
            raw = response.read()
    assert response.status_code < 500 or response.status_code == 503, (
        response.status_code,
        raw[:500],
    )
    if response.status_code >= 400:
        error = json.loads(raw)["error"]
        assert isinstance(error["message"], str) and error["message"]


def test_the_fuzzing_logged_no_bug(cluster: HttpCluster) -> None:
    for gateway in cluster.gateways:
        log = gateway.log.read_text(errors="replace")
        assert "request failed with a bug" not in log
        assert "Traceback" not in log, log[-3000:]
