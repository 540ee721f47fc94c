"""Replies and tool output rendered for Telegram (HTML) and Slack (mrkdwn)."""

from __future__ import annotations

from html.parser import HTMLParser

from coordinator.platforms.formatting import slack_mrkdwn, telegram_html
from coordinator.platforms.splitting import split_reply


class _Visible(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open.pop() == tag, f"</{tag}> closes another tag"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def visible(html: str) -> str:
    parser = _Visible()
    parser.feed(html)
    parser.close()
    assert parser.open == [], f"unclosed tags {parser.open}"
    return "".join(parser.text)


def test_code_block_of_tool_output_becomes_pre_with_its_language_and_is_escaped() -> None:
    reply = "Ran it:\n```python\nif a < b and c > d: print('&')\n```\nDone <ok>."
    html = telegram_html(reply)
    assert html == (
        "Ran it:\n<pre><code class=\"language-python\">if a &lt; b and c &gt; d: print('&amp;')"
        "</code></pre>\nDone &lt;ok&gt;."
    )
    assert visible(html) == "Ran it:\nif a < b and c > d: print('&')\nDone <ok>."


def test_inline_code_and_markup_injection_in_model_text() -> None:
    html = telegram_html("use `rm -rf <dir>` not <b>this</b> & <a href='x'>that</a>")
    assert html.startswith("use <code>rm -rf &lt;dir&gt;</code> not &lt;b&gt;")
    assert visible(html) == "use rm -rf <dir> not <b>this</b> & <a href='x'>that</a>"


def test_unclosed_fence_of_a_streaming_preview_still_parses() -> None:
    html = telegram_html("output:\n```\nline 1\nline 2")
    assert html.endswith("<pre><code>line 1\nline 2</code></pre>")
    visible(html)


def test_an_odd_language_tag_is_dropped_not_injected() -> None:
    html = telegram_html('```py" onclick="x\ncode\n```')
    assert html == "<pre><code>code</code></pre>"


def test_every_part_of_a_long_split_reply_is_valid_html_within_telegram_limit() -> None:
    code = "\n".join(f"x{i} = {i} < {i + 1}" for i in range(600))
    reply = "Here:\n```python\n" + code + "\n```\nbye & thanks"
    parts = split_reply(reply, 4096)
    assert len(parts) > 2
    seen = []
    for part in parts:
        shown = visible(telegram_html(part))
        assert len(shown) <= 4096
        seen.append(shown)
    assert "x599 = 599 < 600" in seen[-1] or "x599 = 599 < 600" in seen[-2]


def test_slack_mrkdwn_escapes_converts_bold_and_drops_fence_languages() -> None:
    text = "**Result** for <you> & `a<b`:\n```bash\necho '<hi>'\n```"
    assert slack_mrkdwn(text) == (
        "*Result* for &lt;you&gt; &amp; `a&lt;b`:\n```\necho '&lt;hi&gt;'\n```"
    )


def test_plain_text_is_unchanged() -> None:
    assert telegram_html("echo: hello twice") == "echo: hello twice"
    assert slack_mrkdwn("echo: hello twice") == "echo: hello twice"
