"""The Telegram simulator parses HTML messages as Telegram does and logs each send's time."""

from __future__ import annotations

import httpx

from agent.simulator.telegram_api import TelegramSimulator

TOKEN = "9:unit-" + "z" * 20


def _call(sim: TelegramSimulator, method: str, **params: object) -> httpx.Response:
    return httpx.post(f"{sim.url}/bot{TOKEN}/{method}", json=params)


def test_html_is_shown_as_its_visible_text_and_bad_markup_is_refused() -> None:
    with TelegramSimulator() as sim:
        sim.add_bot(TOKEN)
        ok = _call(
            sim,
            "sendMessage",
            chat_id=5,
            text="<pre><code>a &lt; b</code></pre>",
            parse_mode="HTML",
        )
        assert ok.status_code == 200
        assert sim.messages(5)[0].text == "a < b"
        for bad in ("a < b", "<b>open", "<script>x</script>", "fish & chips"):
            refused = _call(sim, "sendMessage", chat_id=5, text=bad, parse_mode="HTML")
            assert refused.status_code == 400, bad
            assert "can't parse entities" in refused.json()["description"]
        assert _call(sim, "sendMessage", chat_id=5, text="a < b & c").status_code == 200  # plain
        long_visible = "&lt;" * 4096  # 16 KiB of markup, 4,096 visible characters
        assert (
            _call(sim, "sendMessage", chat_id=6, text=long_visible, parse_mode="HTML").status_code
            == 200
        )
        assert [c.status for c in sim.calls(5)] == [200, 400, 400, 400, 400, 200]


def test_an_edit_to_the_same_text_is_not_modified_and_edits_are_timed() -> None:
    with TelegramSimulator() as sim:
        sim.add_bot(TOKEN)
        sent = _call(sim, "sendMessage", chat_id=7, text="draft").json()["result"]["message_id"]
        assert (
            _call(sim, "editMessageText", chat_id=7, message_id=sent, text="final").status_code
            == 200
        )
        same = _call(sim, "editMessageText", chat_id=7, message_id=sent, text="final")
        assert same.status_code == 400 and "not modified" in same.json()["description"]
        message = sim.messages(7)[0]
        assert message.text == "final" and message.edits == 1
        assert len(message.edited_at) == 1 and message.edited_at[0] >= message.sent_at
