"""Incremental Markdown rendering of a long streaming answer, in a real browser: Playwright
driving Debian's Chromium against daphne and the development LLM server.

Finished blocks are rendered once and kept (the very same DOM nodes at the end), each frame
lexes only the growing tail (read from the `chat:render` performance measures' detail), and
the end result is exactly what rendering the whole text at once gives, live and after a
reload. Timings are left to `make bench-render`; these tests check structure only.
"""

import re

import pytest
from playwright.sync_api import Page, expect

from bench.render_bench import long_markdown
from conversations.models import Message

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

ANSWER = long_markdown(2000)
# The development server echoes the prompt without its directive, stripped.
EXPECTED = ANSWER.strip()
PROMPT = f"[[devllm echo delay_ms=2]] {ANSWER}"

# Tag the first block and the first code block once 10% of the answer is on screen.
TAG_AT_10_PERCENT = """(total) => {
  const body = document.querySelector(
    "article.message-assistant[data-status='streaming'] .message-body");
  const last = performance.getEntriesByName("chat:render").at(-1);
  if (!body || !last || last.detail.length < total * 0.1) {
    return false;
  }
  const first = body.firstElementChild;
  const code = body.querySelector(".code-block");
  first.renderMarker = "first block";
  window.firstBlock = first;
  if (code) {
    code.renderMarker = "first code block";
    window.firstCode = code;
  }
  return {
    length: last.detail.length,
    kept: last.detail.kept,
    firstTag: first.tagName,
    codeHighlighted: Boolean(code && code.querySelector("code.hljs [class^='hljs-']")),
    codeHasCopy: Boolean(code && code.querySelector("button.code-copy")),
  };
}"""

RENDERS = """() => performance.getEntriesByName("chat:render").map((e) => e.detail)"""

# The same text rendered whole by the page's own module, next to what the view left.
WHOLE_RENDER = """async (text) => {
  const chat = document.querySelector("script[src*='conversations/chat.js']").src;
  const { renderMarkdown } = await import(new URL("markdown.js", chat).href);
  const whole = document.createElement("div");
  renderMarkdown(whole, text);
  const bodies = document.querySelectorAll("article.message-assistant .message-body");
  return { whole: whole.innerHTML, shown: bodies[bodies.length - 1].innerHTML };
}"""


def largest_block(text: str) -> int:
    """The longest run of text between blank lines (a top-level block, in this answer)."""
    return max(len(block) for block in re.split(r"\n\s*\n", text))


def stream_long_answer(page: Page) -> dict:
    """Send the long answer's prompt; tag the first blocks at 10%; wait for the end."""
    page.fill("#message-input", PROMPT)
    page.press("#message-input", "Enter")
    at_10 = page.wait_for_function(TAG_AT_10_PERCENT, arg=len(EXPECTED), timeout=30_000)
    answer = page.locator("article.message-assistant").last
    expect(answer).to_have_attribute("data-status", "completed", timeout=60_000)
    return at_10.json_value()


def test_a_long_answer_renders_block_by_block_and_ends_as_a_whole_render(page):
    # One stream serves every check: it is the slow part.
    at_10 = stream_long_answer(page)
    check_finished_blocks_were_kept(page, at_10)
    check_frames_lexed_only_the_tail(page)
    check_the_result_is_a_whole_render(page)
    # Page load renders the saved answer through the same view, to the same result.
    page.reload()
    expect(page.locator("article.message-assistant").last).to_have_attribute(
        "data-status", "completed"
    )
    check_the_result_is_a_whole_render(page)


def check_finished_blocks_were_kept(page: Page, at_10: dict) -> None:
    # At 10%, the first block and the first code block were finished: rendered for good,
    # the code highlighted and given its Copy button.
    assert at_10["kept"] >= 1
    assert at_10["firstTag"] == "H2"
    assert at_10["codeHighlighted"] and at_10["codeHasCopy"], at_10
    # At 100%, they are the very same DOM nodes: never replaced while the answer grew.
    survived = page.evaluate(
        """() => {
          const body = [...document.querySelectorAll(
            "article.message-assistant .message-body")].at(-1);
          return {
            first: body.firstElementChild === window.firstBlock
              && window.firstBlock.renderMarker === "first block",
            code: body.contains(window.firstCode)
              && window.firstCode.renderMarker === "first code block",
          };
        }"""
    )
    assert survived == {"first": True, "code": True}


def check_frames_lexed_only_the_tail(page: Page) -> None:
    renders = [d for d in page.evaluate(RENDERS) if not d["final"]]
    total = len(EXPECTED)
    near_end = [d for d in renders if d["length"] >= total * 0.9]
    assert near_end, "no render measured in the last 10% of the answer"
    # Each frame near the end lexed the unfinished tail only (at most the last two blocks),
    # not the answer so far, and rendered a block or two.
    bound = 2 * largest_block(EXPECTED) + 10
    assert max(d["chars"] for d in near_end) <= bound < total * 0.2
    assert max(d["blocks"] for d in near_end) <= 3
    assert min(d["kept"] for d in near_end) >= 40
    # Renders are coalesced to animation frames, not one per token.
    assert len(renders) < 1000


def check_the_result_is_a_whole_render(page: Page) -> None:
    saved = Message.objects.filter(role="assistant", user__username="alice").latest("id")
    assert saved.content == EXPECTED
    rendered = page.evaluate(WHOLE_RENDER, EXPECTED)
    assert rendered["shown"] == rendered["whole"]
    # The reference defined at the very end was applied to the block that uses it, and the
    # line that looked like a heading while it streamed ended as paragraph text.
    body = page.locator("article.message-assistant").last.locator(".message-body")
    expect(body.get_by_role("link", name="the guide")).to_have_attribute(
        "href", "https://example.com/guide"
    )
    expect(body.locator("p", has_text="#tagged is not a heading here.")).to_have_count(1)
    assert body.locator(".code-block code.hljs .hljs-keyword").count() >= 10


# Markdown whose blocks can change shape as more text arrives: a line that starts like a
# heading or a rule, a table that interrupts a paragraph, a loose list, a reference defined
# after its use, a setext heading, raw HTML, Windows line ends, an unclosed fence.
TRICKY = [
    "para one\n#hashtag here\nmore\n\n- a\n\n- b\n- c\n\nintro\na | b\n|-|-|\n| 1 | 2 |\n\n"
    "See [ref] and [later].\n\npara\n***bold*** text\n<divider> not html\n\n"
    "> quote\nlazy\n> more\n\n1. one\n2. two\n\n   indented para\n\ntext\n===\n\n"
    "[ref]: https://example.com/r\n[later]: https://example.com/l\n",
    "Not a table:\na | b\n|-|-|x\n\nA table:\na | b\n|-|-|\n| 1 | 2 |\n",
    "line one\r\nline two\r\n\r\n- a\r\n- b\r\n\r\n```\r\ncode\r\n```\r\nend",
    "Some **bold**.\n\n<script>window.__pwned=1</script>\n\n[click](javascript:alert(1)) and "
    "![pic](http://127.0.0.1:9/x.png)\n\n---\n\n```js\nconst a = 1;\n```\n\n```\nlet open",
]

# Stream every text at once, `step` characters per animation frame, into views of detached
# elements, each text `step` times, offset by one character (so that every prefix is seen);
# at each frame a view must look like a whole render of its text so far (code not yet
# coloured), and after flush() be exactly one.
STREAM_TRICKY = """async ([texts, step]) => {
  const chat = document.querySelector("script[src*='conversations/chat.js']").src;
  const { createMarkdownView, renderMarkdown } = await import(new URL("markdown.js", chat).href);
  const plain = (element) => {
    const copy = element.cloneNode(true);
    for (const code of copy.querySelectorAll("pre > code")) {
      code.textContent = code.textContent;
      code.className = "";
    }
    for (const label of copy.querySelectorAll(".code-language")) {
      label.textContent = "";
    }
    return copy.innerHTML;
  };
  const whole = (text) => {
    const element = document.createElement("div");
    renderMarkdown(element, text);
    return element;
  };
  const views = texts.flatMap((text, i) => [...Array(step).keys()].map((offset) => {
    const element = document.createElement("div");
    return { name: `text ${i} offset ${offset}`, text, offset, element,
      view: createMarkdownView(element) };
  }));
  const problems = [];
  const longest = Math.max(...texts.map((text) => text.length));
  for (let end = 1; end < longest + step; end += step) {
    for (const { text, offset, view } of views) {
      view.set(text.slice(0, end + offset));
    }
    await new Promise((resolve) => requestAnimationFrame(resolve));
    for (const { name, text, offset, element } of views) {
      const sofar = text.slice(0, end + offset);
      if (plain(element) !== plain(whole(sofar))) {
        problems.push(`${name}: ${JSON.stringify(sofar)} shows ${plain(element)}`);
      }
    }
  }
  for (const { name, text, element, view } of views) {
    view.flush();
    if (element.innerHTML !== whole(text).innerHTML) {
      problems.push(`${name} flushed: ${element.innerHTML}`);
    }
  }
  return problems;
}"""


def test_markdown_that_changes_shape_as_it_streams_renders_as_a_whole_render(page):
    problems = page.evaluate(STREAM_TRICKY, [TRICKY, 3])
    assert not problems, "\n".join(problems)
    assert page.evaluate("typeof window.__pwned") == "undefined"


WIDE_TABLE = "\n".join(
    [
        "| " + " | ".join(f"Heading {n}" for n in range(1, 9)) + " |",
        "|" + "---|" * 8,
        "| " + " | ".join(["internationalization considerations"] * 8) + " |",
    ]
)

# Each word of the table's cells: whether it lies on one line (a word broken letter by
# letter has a rectangle per line), and whether the table scrolls sideways.
TABLE_LAYOUT = """() => {
  const table = document.querySelector("article.message-assistant .markdown table");
  const broken = [];
  for (const cell of table.querySelectorAll("th, td")) {
    const text = cell.firstChild;
    for (const match of text.textContent.matchAll(/\\S+/g)) {
      const range = document.createRange();
      range.setStart(text, match.index);
      range.setEnd(text, match.index + match[0].length);
      if (range.getClientRects().length > 1) broken.push(match[0]);
    }
  }
  return { broken, scrolls: table.scrollWidth > table.clientWidth };
}"""


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
def test_a_wide_table_scrolls_sideways_with_its_words_whole(page: Page, width):
    page.set_viewport_size({"width": width, "height": 800})
    page.fill("#message-input", f"[[devllm echo]] {WIDE_TABLE}")
    page.press("#message-input", "Enter")
    answer = page.locator("article.message-assistant").last
    expect(answer).to_have_attribute("data-status", "completed")

    layout = answer.page.evaluate(TABLE_LAYOUT)

    assert layout["broken"] == []
    assert layout["scrolls"]
