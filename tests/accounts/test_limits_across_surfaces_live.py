"""One user's per-minute limit is one count, whichever way the user asks: the chat page's
SSE stream, the WebSocket, /v1/chat/completions and /v1/responses, on two server processes
sharing Redis."""

import asyncio
import json

import openai
import pytest
from websockets.asyncio.client import connect

from conversations.models import Message
from tests.conftest import fresh_rate_window, log_in, openai_client
from tests.sse_client import post_stream

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

SHORT = "[[devllm tokens=2]] Hi"


def over_websocket(site, session: str, request_id: str) -> dict:
    """Send one message over the chat socket; return the turn's last message (its final
    event, or the refusal)."""

    async def run() -> dict:
        async with connect(
            site.url.replace("http://", "ws://") + "/ws/chat/",
            additional_headers={"Cookie": f"sessionid={session}"},
            origin=site.url,
            open_timeout=10,
        ) as socket:
            await socket.send(
                json.dumps({"type": "send", "message": SHORT, "request_id": request_id})
            )
            async with asyncio.timeout(30):
                while True:
                    message = json.loads(await socket.recv())
                    if message["type"] == "error" or message.get("event") in ("done", "error"):
                        return message

    return asyncio.run(run())


def test_the_per_minute_limit_is_shared_by_every_surface(
    site_pair, alice, make_api_key, set_limits
):
    set_limits(alice, requests_per_minute=4)
    key = make_api_key(alice)
    first, second = site_pair
    browser = log_in(first.url, "alice")
    session = browser.cookies["sessionid"]
    sdk = openai_client(second, key)
    fresh_rate_window(alice)

    allowed = [
        post_stream(browser, {"message": SHORT}).events[-1].data["status"],
        over_websocket(second, session, "surfaces-ws-1")["data"]["status"],
        sdk.chat.completions.create(
            model="dev/dev-chat", messages=[{"role": "user", "content": SHORT}]
        )
        .choices[0]
        .finish_reason,
        sdk.responses.create(model="dev/dev-chat", input=SHORT).status,
    ]
    refused_sse = post_stream(browser, {"message": SHORT})
    refused_ws = over_websocket(first, session, "surfaces-ws-2")
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(
            model="dev/dev-chat", messages=[{"role": "user", "content": SHORT}]
        )
    with pytest.raises(openai.RateLimitError):
        sdk.responses.create(model="dev/dev-chat", input=SHORT)

    assert allowed == ["completed", "completed", "length", "incomplete"]
    assert refused_sse.status_code == 429
    assert "limit of 4 requests a minute" in refused_sse.events[-1].data["error"]["message"]
    assert (refused_ws["type"], refused_ws["status"]) == ("error", 429)
    assert refused_ws["retry_after"] >= 1
    assert Message.objects.filter(user=alice, is_answer=True).count() == 4
