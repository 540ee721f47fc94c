"""The OpenAI-compatible endpoint through the official ``openai`` client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.integration.http.conftest import WORKERS, HttpCluster
from tests.support.gateway import API_KEY

pytestmark = pytest.mark.integration


@pytest.fixture
def client(cluster: HttpCluster, session_key: str) -> Iterator[openai.OpenAI]:
    made = openai.OpenAI(
        base_url=f"{cluster.a.url}/v1",
        api_key=API_KEY,
        default_headers={"X-Session-Key": session_key},
        max_retries=0,
    )
    yield made
    made.close()


def test_completions_keep_the_conversation_on_the_server(
    cluster: HttpCluster, client: openai.OpenAI, session_key: str
) -> None:
    first = client.chat.completions.create(
        model="anything", messages=[{"role": "user", "content": "hello gateway"}]
    )
    assert first.choices[0].message.content == "echo: hello gateway"
    assert first.choices[0].finish_reason == "stop"
    assert first.model == "anything"
    assert first.usage is not None and first.usage.completion_tokens > 0
    history = [
        {"role": "system", "content": "ignored: the cluster config sets the prompt"},
        {"role": "user", "content": "hello gateway"},
        {"role": "assistant", "content": "echo: hello gateway"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
    ]
    second = client.chat.completions.create(model="anything", messages=history)  # type: ignore[arg-type]
    assert second.choices[0].message.content == "echo: second"
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details.cached_tokens > 0  # the server kept the prefix warm
    again = client.chat.completions.create(model="anything", messages=history)  # type: ignore[arg-type]
    assert again.id == second.id  # a retried request is the same message, answered once
    with cluster.a.client() as native:
        state = native.get(f"/v1/sessions/{session_key}").json()
        assert state["turns"] == 2 and state["owner"] in WORKERS


def test_streaming_completion_in_openai_chunks(cluster: HttpCluster, client: openai.OpenAI) -> None:
    cluster.sim.set_latency(ttft=0.05, tokens_per_second=200)
    try:
        stream = client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "one two three four five six"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    finally:
        cluster.sim.set_latency()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three four five six"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_session_from_the_user_field(cluster: HttpCluster, session_key: str) -> None:
    with openai.OpenAI(base_url=f"{cluster.b.url}/v1", api_key=API_KEY, max_retries=0) as client:
        reply = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "by user"}], user=session_key
        )
        assert reply.choices[0].message.content == "echo: by user"
        with pytest.raises(openai.BadRequestError, match="X-Session-Key"):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.BadRequestError, match="last message"):
            client.chat.completions.create(
                model="m", messages=[{"role": "assistant", "content": "x"}], user=session_key
            )


def test_wrong_key_is_an_authentication_error(cluster: HttpCluster, session_key: str) -> None:
    with openai.OpenAI(base_url=f"{cluster.a.url}/v1", api_key="sk-nope", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}], user=session_key
            )


def test_malformed_completion_requests_are_4xx(cluster: HttpCluster) -> None:
    with cluster.a.client() as a:
        for body in (
            {},
            {"messages": []},
            {"messages": "hi"},
            {"messages": [{"role": "user", "content": 3}]},
        ):
            response = a.post("/v1/chat/completions", json=body, headers={"X-Session-Key": "k"})
            assert response.status_code == 400, (body, response.text)
        response = a.post(
            "/v1/chat/completions", content=b"[", headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert isinstance(response.json()["error"]["message"], str)
        assert httpx.codes.is_client_error(response.status_code)
