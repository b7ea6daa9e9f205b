"""One user's readers are bounded per server process, HTTP and WebSocket together, so that
nobody can open readers without end and take what every user shares. A real daphne process.
"""

import asyncio
import json

import httpx
import pytest

from tests.conftest import log_in
from tests.servers import start_site
from tests.sse_client import SseReader
from tests.web.test_websocket_live import open_socket

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

SLOW = "[[devllm tokens=100 delay_ms=100]] Take your time."  # about 10 s
BOUND = 3


@pytest.fixture
def bounded_site(site_env, server_logs):
    site = start_site(server_logs, {**site_env, "MAX_READERS_PER_USER": str(BOUND)})
    yield site
    site.stop()


def test_readers_past_the_bound_are_refused_with_a_429_over_http_and_the_socket(
    bounded_site, alice, bob, make_api_key
):
    site = bounded_site
    alice_key, bob_key = make_api_key(alice), make_api_key(bob)
    http = httpx.Client(base_url=site.url, timeout=30)
    # The answer's own response is Alice's first reader; it is never refused.
    with (
        http,
        http.stream(
            "POST",
            "/api/conversations/",
            json={"message": SLOW},
            headers={"Authorization": f"Bearer {alice_key}", "X-Request-ID": "bound-answer"},
        ) as answer,
    ):
        first = SseReader(answer)  # kept: a dropped reader would close the response
        first.read(until_id=1)
        with (
            reattach(http, alice_key, "bound-answer") as second,
            reattach(http, alice_key, "bound-answer") as third,
        ):
            assert (second.status_code, third.status_code) == (200, 200)
            with reattach(http, alice_key, "bound-answer") as fourth:
                refused = fourth.status_code, fourth.headers, json.loads(fourth.read())
            over_socket = asyncio.run(attach_over_socket(site, "bound-answer"))
            readers_at_the_bound = httpx.get(f"{site.url}/health").json()["readers"]
            # Another user is not held back by Alice's readers.
            bob_answer = http.post(
                "/api/conversations/",
                json={"message": "[[devllm tokens=3]] Hi"},
                headers={"Authorization": f"Bearer {bob_key}"},
            )
        # One of Alice's readers left: a new one gets in.
        with reattach(http, alice_key, "bound-answer") as again:
            again_status = again.status_code

    status, headers, body = refused
    assert status == 429
    assert int(headers["Retry-After"]) > 0
    assert f"You have {BOUND} answer streams open" in body["error"]["message"]
    assert (over_socket["type"], over_socket["status"]) == ("error", 429), over_socket
    assert over_socket["retry_after"] > 0
    assert readers_at_the_bound == BOUND
    assert bob_answer.status_code == 200 and b"event: done" in bob_answer.content
    assert again_status == 200


def reattach(http: httpx.Client, key: str, request_id: str):
    return http.stream(
        "GET",
        f"/api/turns/{request_id}/events",
        headers={"Authorization": f"Bearer {key}"},
    )


async def attach_over_socket(site, request_id: str) -> dict:
    async with open_socket(site) as socket:
        await socket.send(json.dumps({"type": "attach", "request_id": request_id}))
        async with asyncio.timeout(15):
            return json.loads(await socket.recv())


def test_the_bound_holds_for_sockets_following_answers_too(bounded_site, alice):
    """Readers held by sockets count: past the bound, a socket's attach is refused, and a
    reader over HTTP as well."""
    site = bounded_site
    client = log_in(site.url, "alice")

    async def scenario() -> tuple[dict, int]:
        # Unbounded queues: sockets that read nothing more still take the close handshake.
        async with open_socket(site, max_queue=None) as socket:
            await socket.send(
                json.dumps({"type": "send", "message": SLOW, "request_id": "socket-answer-1"})
            )
            await socket.recv()  # its start: the socket follows it (reader 1)
            # More readers of the same answer, on sockets of their own, up to the bound.
            others = [open_socket(site, max_queue=None) for _ in range(BOUND - 1)]
            sockets = [await other.__aenter__() for other in others]
            try:
                for other in sockets:
                    await other.send(
                        json.dumps({"type": "attach", "request_id": "socket-answer-1"})
                    )
                    reply = json.loads(await other.recv())
                    assert reply["type"] == "event", reply
                extra = await attach_over_socket(site, "socket-answer-1")
                http_status = await asyncio.to_thread(
                    lambda: client.get("/api/turns/socket-answer-1/events", timeout=10).status_code
                )
                return extra, http_status
            finally:
                for other in others:
                    await other.__aexit__(None, None, None)

    extra, http_status = asyncio.run(scenario())

    assert (extra["type"], extra["status"]) == ("error", 429), extra
    assert http_status == 429
