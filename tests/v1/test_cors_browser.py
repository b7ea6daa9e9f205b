"""A web app on another origin calls /v1 with the official openai SDK, in Chromium.

The app's page, served by the test from a loopback origin of its own with the SDK from
node_modules, runs openai-node with `dangerouslyAllowBrowser`: the browser sends a CORS
preflight for the SDK's headers, then streams an answer from a real chatsite process.
Cross-origin calls are off unless API_CORS_ALLOWED_ORIGINS lists the app's origin.
"""

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator

import pytest

from conversations.models import Message
from tests.servers import ROOT, start_site
from tests.waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

SDK_DIR = ROOT / "node_modules" / "openai"
ASK_WITH_THE_SDK = """
async ({ base, key }) => {
  const { default: OpenAI } = await import("/sdk/index.mjs");
  const client = new OpenAI({
    baseURL: `${base}/v1`, apiKey: key, dangerouslyAllowBrowser: true, maxRetries: 0,
  });
  try {
    const { data: stream, response } = await client.chat.completions
      .create({
        model: "dev/dev-chat",
        messages: [{ role: "user", content: "[[devllm tokens=5 delay_ms=20]] hi" }],
        stream: true,
      })
      .withResponse();
    let text = "";
    let chunks = 0;
    for await (const chunk of stream) {
      chunks += 1;
      text += chunk.choices[0]?.delta?.content ?? "";
    }
    return { text, chunks, requestId: response.headers.get("x-request-id") };
  } catch (error) {
    return { error: error.constructor.name };
  }
}
"""


class AppPages(http.server.SimpleHTTPRequestHandler):
    """The web app: an empty page at /, and the openai SDK's ES modules under /sdk/."""

    extensions_map = {".mjs": "text/javascript", ".js": "text/javascript", "": "text/html"}

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        if path.startswith("/sdk/"):
            return super().translate_path(path.removeprefix("/sdk"))
        return "/dev/null"  # the page: empty, which is all the app needs to run a script

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def app_origin() -> Iterator[str]:
    """Serve the app from a real loopback address (Chromium lets only those reach loopback)."""
    handler = functools.partial(AppPages, directory=str(SDK_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def app():
    with app_origin() as origin:
        yield origin


@pytest.fixture(scope="module")
def other_app():
    with app_origin() as origin:
        yield origin


@pytest.fixture(scope="module")
def cors_site(site_env, server_logs, app):
    server = start_site(server_logs, {**site_env, "API_CORS_ALLOWED_ORIGINS": app})
    yield server
    server.stop()


def ask_from(browser, origin: str, site, key: str) -> dict:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{origin}/")
        return page.evaluate(ASK_WITH_THE_SDK, {"base": site.url, "key": key})
    finally:
        context.close()


def test_an_allowed_origin_streams_an_answer_through_the_sdk(
    browser, app, cors_site, alice, make_api_key
):
    result = ask_from(browser, app, cors_site, make_api_key(alice))

    assert "error" not in result, result
    assert result["chunks"] >= 5 and result["text"]
    # The exposed headers reach the app: the request ID names the saved answer.
    answer = wait_for(
        lambda: Message.objects.filter(
            request_id=result["requestId"], is_answer=True, status="completed"
        ).first(),
        timeout=10,
    )
    assert answer.content == result["text"]


def test_other_origins_are_refused_and_none_is_allowed_by_default(
    browser, app, other_app, cors_site, site, alice, make_api_key
):
    key = make_api_key(alice)

    not_listed = ask_from(browser, other_app, cors_site, key)
    by_default = ask_from(browser, app, site, key)

    # The browser refuses the preflight: the SDK sees no response at all.
    assert not_listed == {"error": "APIConnectionError"}
    assert by_default == {"error": "APIConnectionError"}
    assert not Message.objects.filter(user=alice).exists()
