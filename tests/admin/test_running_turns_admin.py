"""The admin's live view of running answers, across real server processes.

Two daphne processes share one database and one Redis. An answer runs on process A; staff
follow the live list, watch the answer and stop it on process B: the list is fed by the
channel layer (a roll call, then start, progress and end notices), the watch re-attaches to
the answer's events wherever it runs, and the Stop goes to A as the owner's own would. Every
watch and stop is a TurnAudit row. One more process runs alone without Redis (the in-memory
layer), as `make run` does.
"""

import asyncio
import socket
import threading
import time
from collections.abc import Callable

import httpx
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import Permission

from conversations import bus
from conversations.models import Message, TurnAudit
from conversations.providers.config import ModelOption
from conversations.records import StartedTurn
from conversations.turns import live, registry
from conversations.turns.eventlog import MemoryEventLog
from conversations.turns.live import ENDED, STALE_SECONDS, TURNS, LiveRoll
from conversations.turns.runner import TurnRun
from tests.conftest import log_in, openai_client, two_sites_sharing_redis
from tests.servers import ServerProcess, devllm_record, start_site
from tests.sse_client import Event, parse_events
from tests.waiting import wait_for

LIVE = "/admin/conversations/message/running/"
WORDS = " ".join(f"w{n}" for n in range(1, 81))
# Eighty words, one every 150 ms: long enough to be seen, watched and stopped.
LONG_ANSWER = f"[[devllm echo delay_ms=150]] {WORDS}"


def process_of(site: ServerProcess) -> str:
    """How the live view names a server process: host:pid."""
    return f"{socket.gethostname()}:{site.process.pid}"


class Tail:
    """Read a Server-Sent Events response in a thread, as a browser tab would, and keep its
    events (keep-alives left out) for the test to wait on."""

    def __init__(self, client: httpx.Client, method: str, url: str, **kwargs) -> None:
        self.client, self.events, self.status = client, [], None
        self.ended = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(method, url), kwargs=kwargs)
        self._thread.start()

    def _read(self, method: str, url: str, **kwargs) -> None:
        try:
            with self.client.stream(method, url, **kwargs) as response:
                self.status = response.status_code
                buffer = b""
                for chunk in response.iter_raw():
                    parsed, buffer = parse_events(buffer + chunk, time.monotonic())
                    with self._changed:
                        self.events.extend(e for e in parsed if e.name != "comment")
                        self._changed.notify_all()
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by the test
        finally:
            with self._changed:
                self.ended = True
                self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[Event]], object], timeout: float = 20):
        """Wait until predicate(events) is truthy and return it; fail after `timeout`."""
        with self._changed:
            found = self._changed.wait_for(
                lambda: predicate(self.events) or self.ended, timeout=timeout
            )
            result = predicate(self.events)
        assert result, f"not seen (stream ended: {self.ended}): {self.events[-5:]}"
        assert found
        return result

    def named(self, name: str, **data) -> list[Event]:
        return [
            e
            for e in list(self.events)
            if e.name == name and all(e.data.get(k) == v for k, v in data.items())
        ]

    def close(self) -> None:
        self.client.close()
        self._thread.join(timeout=10)


def grant(user, *codenames: str) -> None:
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="conversations", codename__in=codenames)
    )


@pytest.fixture(scope="module")
def process_a_and_b(site_env, server_logs):
    with two_sites_sharing_redis(site_env, server_logs, "live-turns") as sites:
        yield sites


@pytest.fixture
def operator(make_user):
    """Staff who may watch and stop answers, and read the audit records."""
    user = make_user("operator", is_staff=True)
    grant(user, "view_message", "stop_turn", "view_turnaudit")
    return user


@pytest.fixture
def watcher(make_user):
    """Staff who may watch answers, but not stop them."""
    user = make_user("watcher", is_staff=True)
    grant(user, "view_message")
    return user


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_staff_on_one_process_see_watch_and_stop_an_answer_running_on_another(
    process_a_and_b, devllm, alice, operator
):
    a, b = process_a_and_b
    live = Tail(log_in(b.url, "operator"), "GET", LIVE + "events/")
    owner = Tail(
        log_in(a.url, "alice"),
        "POST",
        "/api/conversations/",
        json={"message": LONG_ANSWER, "model": "dev/dev-chat"},
    )
    request_id = owner.wait_for(lambda events: events and events[0].data["request_id"])
    answer = Message.objects.get(request_id=request_id, is_answer=True)

    # B's live list shows the answer A runs, with its owner, model and process.
    seen = live.wait_for(lambda _: live.named("turn", request_id=request_id))[0].data
    assert live.events[0].name == "hello" and live.events[0].data["process"] == process_of(b)
    assert (seen["user"], seen["model"], seen["source"]) == ("alice", "dev/dev-chat", "web")
    assert seen["process"] == process_of(a)
    assert seen["conversation_url"] == (
        f"/admin/conversations/conversation/{answer.conversation_id}/change/"
    )
    assert seen["stop_url"] == f"{LIVE}{answer.pk}/stop/"
    # Its token count grows as A's progress notices come.
    live.wait_for(
        lambda _: len({e.data["tokens"] for e in live.named("turn", key=seen["key"])}) > 2
    )
    counts = [e.data["tokens"] for e in live.named("turn", key=seen["key"])]
    assert counts == sorted(counts) and counts[-1] > counts[0]

    # Watching it on B streams its words, from the first.
    watch = Tail(log_in(b.url, "operator"), "GET", seen["watch_url"])
    watch.wait_for(lambda _: len(watch.named("delta")) >= 3)
    assert watch.status == 200 and watch.events[0].name == "start"
    assert "".join(e.data["content"] for e in watch.named("delta")).split()[:3] == [
        "w1",
        "w2",
        "w3",
    ]

    # Stop on B: A closes the model's stream, and every reader sees the answer end.
    stopper = log_in(b.url, "operator")
    stopped = stopper.post(seen["stop_url"])
    assert stopped.status_code == 202
    assert stopped.json() == {"request_id": request_id, "status": "stopping"}
    assert live.wait_for(lambda _: live.named("ended", key=seen["key"]))[0].data == {
        "key": seen["key"],
        "status": "stopped",
    }
    for reader in (watch, owner):
        last = reader.wait_for(lambda events: events and events[-1].name == "done" and events[-1])
        assert last.data["status"] == "stopped"
    answer.refresh_from_db()
    assert answer.status == "stopped" and 3 <= answer.completion_tokens < 80
    record = wait_for(lambda: (r := devllm_record(devllm, request_id))["client_disconnected"] and r)
    assert not record["finished"]

    # The watch and the stop are on record, and in the admin's audit list.
    audits = TurnAudit.objects.filter(request_id=request_id).order_by("pk")
    assert [(r.staff, r.action, r.owner, r.message_id) for r in audits] == [
        (operator, "view", alice, answer.pk),
        (operator, "stop", alice, answer.pk),
    ]
    listed = stopper.get(f"/admin/conversations/turnaudit/?action__exact=stop&q={request_id}")
    assert listed.status_code == 200
    assert request_id in listed.text and f"/admin/conversations/message/{answer.pk}/" in listed.text
    for tail in (live, watch, owner):
        tail.close()


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_staff_watching_do_not_keep_an_answer_going_that_its_client_left(
    process_a_and_b, devllm, alice, watcher, make_api_key
):
    """A /v1 client that hangs up cancels its answer (V1_DISCONNECT_POLICY), whoever else
    looks on: staff watching, on this process or another, are not its readers."""
    a, b = process_a_and_b
    sdk = openai_client(a, make_api_key(alice))
    stream = sdk.chat.completions.create(
        model="dev/dev-chat",
        messages=[{"role": "user", "content": LONG_ANSWER}],
        stream=True,
        extra_headers={"X-Request-ID": "watched-v1-01"},
    )
    next(iter(stream))
    answer = Message.objects.get(request_id="watched-v1-01", is_answer=True)
    watchers = [
        Tail(log_in(site.url, "watcher"), "GET", f"{LIVE}{answer.pk}/events/") for site in (a, b)
    ]
    for watch in watchers:
        watch.wait_for(lambda _, w=watch: len(w.named("delta")) >= 2)

    stream.close()  # the client hangs up

    for watch in watchers:
        last = watch.wait_for(lambda events: events and events[-1].name == "done" and events[-1])
        assert last.data["status"] == "stopped"
    answer.refresh_from_db()
    assert answer.status == "stopped"
    wait_for(lambda: devllm_record(devllm, "watched-v1-01")["client_disconnected"])
    for watch in watchers:
        watch.close()


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_staff_without_stop_turn_can_watch_but_not_stop_and_plain_users_are_sent_to_log_in(
    process_a_and_b, devllm, alice, watcher, make_api_key
):
    a, b = process_a_and_b
    live = Tail(log_in(b.url, "watcher"), "GET", LIVE + "events/")
    live.wait_for(lambda events: events)
    owner = Tail(
        log_in(a.url, "alice"),
        "POST",
        "/api/conversations/",
        json={"message": LONG_ANSWER, "model": "dev/dev-chat"},
    )
    request_id = owner.wait_for(lambda events: events and events[0].data["request_id"])
    answer = Message.objects.get(request_id=request_id, is_answer=True)
    seen = live.wait_for(lambda _: live.named("turn", request_id=request_id))[0].data

    # No Stop for this staff member: none offered, and the endpoint refuses.
    assert seen["stop_url"] is None
    page = log_in(b.url, "watcher").get(LIVE)
    assert page.status_code == 200 and 'data-can-stop="false"' in page.text
    refused = log_in(b.url, "watcher").post(f"{LIVE}{answer.pk}/stop/")
    assert refused.status_code == 403
    assert "stop" in refused.json()["error"]["message"]

    # A plain user (even the answer's owner) gets the admin's login for the page and all
    # three endpoints.
    alices = log_in(b.url, "alice")
    for method, path in (
        ("GET", LIVE),
        ("GET", LIVE + "events/"),
        ("GET", f"{LIVE}{answer.pk}/events/"),
        ("POST", f"{LIVE}{answer.pk}/stop/"),
    ):
        response = alices.request(method, path)
        assert response.status_code == 302, path
        assert response.headers["location"].startswith("/admin/login/?next="), path

    # The answer runs on, untouched by the refused Stop, and nothing is on record.
    assert not devllm_record(devllm, request_id)["client_disconnected"]
    assert list(TurnAudit.objects.values_list("action", flat=True)) == []
    alices_on_a = log_in(a.url, "alice")
    assert alices_on_a.post(f"/api/turns/{request_id}/stop").json()["status"] == "stopped"
    live.wait_for(lambda _: live.named("ended", key=seen["key"]))

    # An answer through /v1 (source "api") shows up, and leaves the list when it ends.
    with openai_client(a, make_api_key(alice)).chat.completions.create(
        model="dev/dev-chat",
        messages=[{"role": "user", "content": "[[devllm echo delay_ms=200]] one two three four"}],
        stream=True,
    ) as chunks:
        words = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    short = Message.objects.filter(is_answer=True, user=alice).latest("pk")
    assert words.split() == ["one", "two", "three", "four"]
    key = f"{alice.pk}:{short.request_id}"
    api_row = live.wait_for(lambda _: live.named("turn", key=key))[0].data
    assert (api_row["source"], api_row["process"]) == ("api", process_of(a))
    assert live.wait_for(lambda _: live.named("ended", key=key))[0].data["status"] == "completed"
    # A reader that connects now is told of neither: the roll call finds nothing running.
    fresh = Tail(log_in(b.url, "watcher"), "GET", LIVE + "events/")
    fresh.wait_for(lambda events: events)
    time.sleep(1.5)  # a roll-call answer or a progress notice would have come by now
    assert fresh.named("turn") == []
    for tail in (live, owner, fresh):
        tail.close()


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_the_live_view_works_in_one_process_without_redis(
    site_env, server_logs, devllm, alice, operator
):
    """Without REDIS_URL the channel layer is in memory: one process serves the list, the
    watch and the Stop."""
    alone = start_site(server_logs, {**site_env, "REDIS_URL": ""})
    try:
        live = Tail(log_in(alone.url, "operator"), "GET", LIVE + "events/")
        live.wait_for(lambda events: events)
        owner = Tail(
            log_in(alone.url, "alice"),
            "POST",
            "/api/conversations/",
            json={"message": LONG_ANSWER, "model": "dev/dev-chat"},
        )
        request_id = owner.wait_for(lambda events: events and events[0].data["request_id"])
        seen = live.wait_for(lambda _: live.named("turn", request_id=request_id))[0].data
        assert seen["process"] == process_of(alone)
        watch = Tail(log_in(alone.url, "operator"), "GET", seen["watch_url"])
        watch.wait_for(lambda _: watch.named("delta"))

        assert log_in(alone.url, "operator").post(seen["stop_url"]).status_code == 202

        assert live.wait_for(lambda _: live.named("ended", key=seen["key"]))
        last = watch.wait_for(lambda events: events[-1].name == "done" and events[-1])
        assert last.data["status"] == "stopped"
        assert Message.objects.get(request_id=request_id, is_answer=True).status == "stopped"
        assert TurnAudit.objects.filter(request_id=request_id).count() == 2
        for tail in (live, watch, owner):
            tail.close()
    finally:
        alone.stop()


# One process, in memory ------------------------------------------------------------------


def test_a_reader_that_connects_while_a_turn_runs_learns_of_it_from_the_roll_call(settings):
    """No start or progress notice is sent here (the turn is registered, not started): what
    the reader learns comes from the process's answer to its roll call alone."""
    settings.CHANNEL_LAYERS = {
        alias: {"BACKEND": "channels.layers.InMemoryChannelLayer"}
        for alias in ("default", "control", "readers")
    }
    model = ModelOption(key="dev/dev-chat", endpoint="dev", upstream_id="dev-chat", label="Dev")
    turn = StartedTurn(
        request_id="req-roll-call-1",
        user_id=7,
        conversation_id=11,
        conversation_title="Rivers",
        user_message_id=12,
        assistant_message_id=13,
        model=model,
        history=[{"role": "user", "content": "Hi"}],
    )

    async def connect_while_it_runs() -> list:
        run = TurnRun(turn, client=None, log=MemoryEventLog())  # type: ignore[arg-type]
        registry.register(run)  # as TurnRun.start() does, which also starts the listeners
        for _ in range(500):  # until the listener has joined its group
            if get_channel_layer(bus.CONTROL.alias).groups.get(bus.CONTROL.group):
                break
            await asyncio.sleep(0.01)
        feed = live.follow_running_turns(keepalive_seconds=5)
        try:
            return await anext(feed)
        finally:
            registry.unregister(run)
            await feed.aclose()
            for listener in bus._listeners.values():
                listener.cancel()

    changes = async_to_sync(connect_while_it_runs)()

    assert [(kind, data["key"], data["message_id"]) for kind, data in changes] == [
        ("turn", "7:req-roll-call-1", 13)
    ]
    assert changes[0][1]["process"] == live.process_name()


# The reader's bookkeeping, without a server --------------------------------------------


def turn(key: str, tokens: int) -> dict:
    return {"key": key, "tokens": tokens, "request_id": key}


def test_a_reader_reports_new_turns_and_new_tokens_and_nothing_else():
    roll = LiveRoll()

    first = roll.apply({"type": TURNS, "turns": [turn("1:a", 0)]}, now=0)
    again = roll.apply({"type": TURNS, "turns": [turn("1:a", 0)]}, now=1)
    grown = roll.apply({"type": TURNS, "turns": [turn("1:a", 4)]}, now=2)

    assert first == [("turn", turn("1:a", 0))]
    assert again == []
    assert grown == [("turn", turn("1:a", 4))]


def test_news_of_a_turn_that_arrives_after_its_end_is_ignored():
    roll = LiveRoll()
    roll.apply({"type": TURNS, "turns": [turn("1:a", 3)]}, now=0)

    ended = roll.apply({"type": ENDED, "key": "1:a", "status": "completed"}, now=1)
    late = roll.apply({"type": TURNS, "turns": [turn("1:a", 5)]}, now=1.1)

    assert ended == [("ended", {"key": "1:a", "status": "completed"})]
    assert late == [] and roll.turns == {}


def test_a_turn_no_process_mentions_any_more_is_dropped():
    """Its process died without saying the turn ended."""
    roll = LiveRoll()
    roll.apply({"type": TURNS, "turns": [turn("1:a", 3), turn("1:b", 1)]}, now=0)
    roll.apply({"type": TURNS, "turns": [turn("1:b", 2)]}, now=STALE_SECONDS)

    dropped = roll.expire(now=STALE_SECONDS + 1)

    assert dropped == [("ended", {"key": "1:a", "status": None})]
    assert list(roll.turns) == ["1:b"]
