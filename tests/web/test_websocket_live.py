"""The chat over a WebSocket (/ws/chat/), with a real client (the `websockets` library)
against a real daphne process: the same turns, events, ids and saves as the SSE stream.
"""

import asyncio
import copy
import json
import time

import pytest
import websockets
from django.conf import settings
from django.db import connections
from django.test.utils import override_settings
from websockets.asyncio.client import connect

from conversations.models import Message
from tests.conftest import log_in
from tests.servers import devllm_record, start_site
from tests.sse_client import post_stream
from tests.waiting import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

WORDS = " ".join(f"w{i}" for i in range(1, 41))
LONG = f"[[devllm echo delay_ms=100]] {WORDS}"


def socket_url(site) -> str:
    return site.url.replace("http://", "ws://") + "/ws/chat/"


def session_headers(site, username: str) -> dict:
    client = log_in(site.url, username)
    return {"Cookie": f"sessionid={client.cookies['sessionid']}"}


def open_socket(site, username: str = "alice", *, origin: str | None = None, **options):
    return connect(
        socket_url(site),
        additional_headers=session_headers(site, username),
        origin=origin or site.url,
        open_timeout=10,
        **options,
    )


async def read_turn(socket, request_id: str, *, until=None) -> list[dict]:
    """Read this turn's event messages up to its final event (or until `until` holds),
    each stamped with when it arrived."""
    events = []
    async with asyncio.timeout(60):
        while True:
            message = json.loads(await socket.recv())
            message["at"] = time.monotonic()
            if message.get("request_id") != request_id:
                continue
            assert message["type"] == "event", message
            events.append(message)
            if message["event"] in ("done", "error") or (until and until(events)):
                return events


def text_of(events: list[dict]) -> str:
    return "".join(e["data"]["content"] for e in events if e["event"] == "delta")


def test_a_message_streams_over_the_socket_and_is_saved_like_an_sse_turn(site, alice):
    async def scenario():
        async with open_socket(site) as socket:
            await socket.send(
                json.dumps({"type": "send", "message": LONG, "request_id": "ws-send-01"})
            )
            return await read_turn(socket, "ws-send-01")

    events = asyncio.run(scenario())

    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    assert events[-1]["data"]["status"] == "completed"
    assert text_of(events) == WORDS
    deltas = [e["at"] for e in events if e["event"] == "delta"]
    assert len(deltas) == 40 and deltas[-1] > deltas[0]  # arriving over time, one by one
    # The same turn through SSE is saved with the same shape.
    sse = post_stream(
        log_in(site.url, "alice"), {"message": LONG}, headers={"X-Request-ID": "ws-sse-001"}
    )
    assert [e.name for e in sse.events if e.name != "comment"] == [e["event"] for e in events]
    over_socket = Message.objects.get(request_id="ws-send-01", is_answer=True)
    over_sse = Message.objects.get(request_id="ws-sse-001", is_answer=True)
    fields = ("status", "content", "finish_reason", "model", "usage_reported", "completion_tokens")
    assert [getattr(over_socket, f) for f in fields] == [getattr(over_sse, f) for f in fields]
    assert over_socket.conversation.source == over_sse.conversation.source == "web"
    assert over_socket.conversation.messages.filter(role="user").get().content == LONG


def test_the_socket_streams_and_stops_the_same_under_uvicorn(site_env, server_logs, devllm, alice):
    """uvicorn is the production server (README): its WebSocket protocol carries the same
    turns, ids, Stop and saves as daphne's."""
    site = start_site(server_logs, site_env, server="uvicorn")

    async def scenario():
        async with open_socket(site) as socket:
            await socket.send(
                json.dumps({"type": "send", "message": LONG, "request_id": "ws-uv-001"})
            )
            whole = await read_turn(socket, "ws-uv-001")
            await socket.send(
                json.dumps({"type": "send", "message": LONG, "request_id": "ws-uv-002"})
            )
            first = await read_turn(socket, "ws-uv-002", until=lambda ev: len(ev) >= 4)
            await socket.send(json.dumps({"type": "stop", "request_id": "ws-uv-002"}))
            return whole, first + await read_turn(socket, "ws-uv-002")

    try:
        whole, stopped = asyncio.run(scenario())
    finally:
        site.stop()

    assert [e["id"] for e in whole] == list(range(1, len(whole) + 1))
    assert whole[-1]["data"]["status"] == "completed" and text_of(whole) == WORDS
    assert stopped[-1]["event"] == "done" and stopped[-1]["data"]["status"] == "stopped"
    answer = Message.objects.get(request_id="ws-uv-002", is_answer=True)
    assert (answer.status, answer.content) == ("stopped", text_of(stopped))
    assert wait_for(lambda: devllm_record(devllm, "ws-uv-002")["client_disconnected"])


def test_stop_over_the_socket_stops_the_model(site, devllm, alice):
    async def scenario():
        async with open_socket(site) as socket:
            await socket.send(
                json.dumps({"type": "send", "message": LONG, "request_id": "ws-stop-001"})
            )
            first = await read_turn(socket, "ws-stop-001", until=lambda ev: len(ev) >= 4)
            await socket.send(json.dumps({"type": "stop", "request_id": "ws-stop-001"}))
            return first + await read_turn(socket, "ws-stop-001")

    events = asyncio.run(scenario())

    assert events[-1]["event"] == "done" and events[-1]["data"]["status"] == "stopped"
    answer = Message.objects.get(request_id="ws-stop-001", is_answer=True)
    assert (answer.status, answer.content) == ("stopped", text_of(events))
    assert 0 < len(answer.content) < len(WORDS)
    wait_for(lambda: devllm_record(devllm, "ws-stop-001")["client_disconnected"], timeout=10)


def test_a_reconnecting_client_attaches_after_its_last_event_exactly(site, alice):
    """The first socket closes mid-answer (a reload): not a Stop, the answer goes on; the
    second attaches with the last id it has and gets exactly the rest."""

    async def scenario():
        async with open_socket(site) as first:
            await first.send(
                json.dumps({"type": "send", "message": LONG, "request_id": "ws-attach-1"})
            )
            before = await read_turn(first, "ws-attach-1", until=lambda ev: len(ev) >= 6)
        async with open_socket(site) as second:
            last = before[-1]["id"]
            await second.send(
                json.dumps({"type": "attach", "request_id": "ws-attach-1", "last_event_id": last})
            )
            after = await read_turn(second, "ws-attach-1")
            # Attaching to an answer that ended, after its last event: nothing follows.
            await second.send(
                json.dumps(
                    {
                        "type": "attach",
                        "request_id": "ws-attach-1",
                        "last_event_id": after[-1]["id"],
                    }
                )
            )
            caught_up = json.loads(await second.recv())
        return before, after, caught_up

    before, after, caught_up = asyncio.run(scenario())

    ids = [e["id"] for e in before + after]
    assert ids == list(range(1, len(ids) + 1))  # no gap, no duplicate
    assert after[-1]["data"]["status"] == "completed"
    assert text_of(before + after) == WORDS
    assert caught_up == {"type": "caught_up", "request_id": "ws-attach-1"}
    assert Message.objects.get(request_id="ws-attach-1", is_answer=True).content == WORDS


def test_one_socket_follows_two_answers_at_once(site, alice):
    async def scenario():
        async with open_socket(site) as socket:
            for request_id in ("ws-two-0001", "ws-two-0002"):
                await socket.send(
                    json.dumps({"type": "send", "message": LONG, "request_id": request_id})
                )
            seen: dict[str, list] = {"ws-two-0001": [], "ws-two-0002": []}
            async with asyncio.timeout(60):
                while not all(ev and ev[-1]["event"] == "done" for ev in seen.values()):
                    message = json.loads(await socket.recv())
                    seen[message["request_id"]].append(message)
            return seen

    seen = asyncio.run(scenario())

    for events in seen.values():
        assert [e["id"] for e in events] == list(range(1, len(events) + 1))
        assert text_of(events) == WORDS
    conversations = {
        Message.objects.get(request_id=r, is_answer=True).conversation_id for r in seen
    }
    assert len(conversations) == 2


def test_bad_messages_get_a_readable_error_and_write_nothing(site, alice):
    async def scenario():
        async with open_socket(site) as socket:
            replies = []
            for message in (
                "not json",
                json.dumps({"type": "send", "request_id": "ws-bad-0001"}),
                json.dumps({"type": "dance"}),
                json.dumps({"type": "stop", "request_id": "no-such-turn"}),
                json.dumps({"type": "attach", "request_id": "ws-bad-0002", "last_event_id": "x"}),
            ):
                await socket.send(message)
                replies.append(json.loads(await socket.recv()))
            return replies

    replies = asyncio.run(scenario())

    assert [(r["type"], r["status"]) for r in replies] == [("error", 400)] * 3 + [
        ("error", 404),
        ("error", 400),
    ]
    assert replies[1]["field"] == "message" and "message" in replies[1]["message"].lower()
    assert replies[2]["field"] == "type"
    assert not Message.objects.filter(request_id="ws-bad-0001").exists()


def test_an_anonymous_client_and_another_sites_page_are_refused(site, alice):
    async def handshake(**options) -> int:
        try:
            async with connect(socket_url(site), open_timeout=10, **options):
                return 101
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    anonymous = asyncio.run(handshake(origin=site.url))
    foreign = asyncio.run(
        handshake(additional_headers=session_headers(site, "alice"), origin="http://evil.example")
    )
    # The same host on another port is another site (another application there).
    port = int(site.url.rsplit(":", 1)[1])
    other_port = asyncio.run(
        handshake(
            additional_headers=session_headers(site, "alice"),
            origin=f"http://127.0.0.1:{port + 1}",
        )
    )
    own = asyncio.run(handshake(additional_headers=session_headers(site, "alice"), origin=site.url))

    assert (anonymous, foreign, other_port, own) == (403, 403, 403, 101)


def test_a_binary_frame_is_refused_politely_and_the_socket_goes_on(site, alice):
    async def scenario() -> tuple[dict, list[dict]]:
        async with open_socket(site) as socket:
            await socket.send(b"\x00\x01 not json")
            refused = json.loads(await socket.recv())
            await socket.send(
                json.dumps({"type": "send", "message": "[[devllm tokens=3]] Still there?"})
            )
            first = json.loads(await socket.recv())
            return refused, [first, *await read_turn(socket, first["request_id"])]

    refused, events = asyncio.run(scenario())

    assert (refused["type"], refused["status"]) == ("error", 400)
    assert "JSON text frame, not binary" in refused["message"]
    assert events[-1]["event"] == "done"


@pytest.mark.parametrize("how", ["logs out", "is deactivated", "changes password"])
def test_an_open_socket_closes_when_its_users_session_ends(site, site_env, alice, how):
    """The socket was opened with the session; once that ends, it tells its client and
    closes at once, and a message sent on it is never answered. A change made here reaches
    the site's process as any process's would: on the bus, through Redis."""
    assert site_env["REDIS_URL"], "this test needs REDIS_URL: the site hears of changes there"
    browser = log_in(site.url, "alice")
    headers = {"Cookie": f"sessionid={browser.cookies['sessionid']}"}

    async def scenario() -> tuple[dict, int | None]:
        async with connect(
            socket_url(site), additional_headers=headers, origin=site.url, open_timeout=10
        ) as socket:
            await socket.send(json.dumps({"type": "attach", "request_id": "no-such-turn-1"}))
            assert json.loads(await socket.recv())["status"] == 404  # a live socket
            if how == "logs out":
                await asyncio.to_thread(browser.post, "/accounts/logout/")
            else:
                await asyncio.to_thread(change_user, site_env, how)
            async with asyncio.timeout(10):
                told = json.loads(await socket.recv())
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await socket.send(json.dumps({"type": "send", "message": "Hello?"}))
                    await socket.recv()
            return told, closed.value.rcvd.code if closed.value.rcvd else None

    told, code = asyncio.run(scenario())

    assert (told["type"], told["status"]) == ("error", 401), told
    assert "no longer logged in" in told["message"]
    assert code == 4401
    assert not Message.objects.filter(content="Hello?").exists()


def change_user(site_env: dict, how: str) -> None:
    """Deactivate alice or give her a new password, telling the site's processes."""
    from django.contrib.auth import get_user_model

    prefix = site_env["CACHE_KEY_PREFIX"]
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    for layer in layers.values():
        name = layer["CONFIG"]["prefix"].rsplit(":", 1)[1]
        layer["CONFIG"]["prefix"] = f"{prefix}:{name}"
    try:
        with override_settings(CHANNEL_LAYERS=layers):
            user = get_user_model().objects.get(username="alice")
            if how == "is deactivated":
                user.is_active = False
            else:
                user.set_password("a-new-long-password-for-alice")
            user.save()
    finally:
        connections.close_all()  # this thread's: the test database must be droppable


def test_a_closed_socket_is_a_disconnect_not_a_stop(site, alice):
    """The chat page's policy ("continue" by default) applies: the answer is finished and
    saved whole although no one reads it any more."""

    async def scenario():
        async with open_socket(site) as socket:
            await socket.send(
                json.dumps({"type": "send", "message": LONG, "request_id": "ws-leave-01"})
            )
            await read_turn(socket, "ws-leave-01", until=lambda ev: len(ev) >= 3)

    asyncio.run(scenario())

    answer = wait_for(
        lambda: (
            Message.objects.filter(request_id="ws-leave-01", is_answer=True)
            .exclude(status="streaming")
            .first()
        ),
        timeout=30,
    )
    assert (answer.status, answer.content) == ("completed", WORDS)
