"""Slack in front of two gateways: signed events only, url_verification, one reply per event_id."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.integration.platforms.conftest import SLACK_SIGNING, PlatformCluster

pytestmark = pytest.mark.integration


def _url(platforms: PlatformCluster, index: int = 0) -> str:
    return f"{platforms.gateways[index].url}/v1/platforms/slack/helpdesk"


def test_an_event_delivered_to_both_gateways_and_retried_gets_one_threaded_reply(
    platforms: PlatformCluster,
) -> None:
    channel = "C" + uuid.uuid4().hex[:8].upper()
    payload = platforms.slack.event(channel, "hi slack", thread_ts="1700.000001")
    statuses = [
        platforms.slack.deliver_event(
            _url(platforms, index), payload, signing_secret=SLACK_SIGNING, retry=retry
        )
        for retry in range(3)
        for index in (0, 1)
    ]
    assert statuses == [200] * 6
    replies = platforms.slack.wait_messages(channel, 1)
    time.sleep(1.0)  # a second reply would have come by now
    replies = platforms.slack.messages(channel)
    assert [(m.text, m.thread_ts) for m in replies] == [("echo: hi slack", "1700.000001")]


def test_url_verification_is_answered_with_its_challenge(platforms: PlatformCluster) -> None:
    payload = {"type": "url_verification", "challenge": "chal-123", "token": "x"}
    stamp = int(time.time())
    from agent.simulator.slack_api import sign

    body = httpx.Request("POST", "http://x", json=payload).read()
    answer = httpx.post(
        _url(platforms),
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": str(stamp),
            "X-Slack-Signature": sign(SLACK_SIGNING, stamp, body),
        },
    )
    assert answer.status_code == 200
    assert answer.json() == {"challenge": "chal-123"}


def test_a_wrongly_signed_or_stale_event_is_refused_and_runs_nothing(
    platforms: PlatformCluster,
) -> None:
    channel = "C" + uuid.uuid4().hex[:8].upper()
    payload = platforms.slack.event(channel, "forged")
    assert (
        platforms.slack.deliver_event(_url(platforms), payload, signing_secret="wrong-secret")
        == 401
    )
    stale = int(time.time()) - 600
    assert (
        platforms.slack.deliver_event(
            _url(platforms), payload, signing_secret=SLACK_SIGNING, timestamp=stale
        )
        == 401
    )
    time.sleep(0.5)
    assert platforms.slack.messages(channel) == []
