"""The turn runner driven directly: its readers, Stop, the disconnect policies and
cancellation edge cases that a live server cannot time exactly. The model is the development
LLM server over real HTTP."""

import asyncio
import contextlib
import functools
import tempfile
from pathlib import Path
from unittest import mock

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import TransactionTestCase

from conversations import services
from conversations.accounts import leases
from conversations.accounts.leases import HeldLease, MemoryStreamLeases
from conversations.models import Message
from conversations.providers import ChatModelClient
from conversations.providers.config import development_endpoints
from conversations.turns import registry, runner
from conversations.turns.encoders import SiteEventEncoder
from conversations.turns.eventlog import MemoryEventLog, RedisEventLog
from conversations.turns.events import decode
from conversations.turns.readers import follow_run
from tests.conftest import PASSWORD
from tests.servers import start_devllm

# It starts the development LLM server.
pytestmark = pytest.mark.live

LONG = "[[devllm tokens=60 delay_ms=20]] Tell me something long."
SHORT = "[[devllm tokens=8 delay_ms=10]] Something short."


def closing_afterwards(test):
    """Run the test's async clean-ups (clients, logs) in its own event loop, at its end."""

    @functools.wraps(test)
    async def wrapper(self):
        self.async_cleanups = []
        try:
            await test(self)
        finally:
            for cleanup, args in reversed(self.async_cleanups):
                await cleanup(*args)

    return wrapper


class SlowLog(MemoryEventLog):
    """An in-process log whose appends take as long as a slow Redis round trip, counted."""

    def __init__(self, *, append_seconds: float) -> None:
        super().__init__()
        self.append_seconds = append_seconds
        self.appends = 0

    def writer(self, turn_key: str):
        writer = super().writer(turn_key)
        store = writer._store

        async def slow_store(events):
            self.appends += 1
            await asyncio.sleep(self.append_seconds)
            await store(events)

        writer._store = slow_store
        return writer


class TurnRunnerTests(TransactionTestCase):
    """Uses TransactionTestCase: the save runs in a worker thread with its own connection."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.devllm = start_devllm(Path(tempfile.mkdtemp()), delay_ms=30)

    @classmethod
    def tearDownClass(cls):
        cls.devllm.stop()
        super().tearDownClass()

    def setUp(self):
        self.user = get_user_model().objects.create_user("carol", password=PASSWORD)
        self.endpoint = development_endpoints(
            devllm_url=f"{self.devllm.url}/v1", connect_timeout=5, read_timeout=5, max_retries=0
        )[0]

    async def start_run(
        self, request_id: str, prompt: str = LONG, *, on_disconnect="continue", log=None, lease=None
    ) -> runner.TurnRun:
        turn = await sync_to_async(services.turn_start)(
            user=self.user,
            conversation_id=None,
            model_key="dev/dev-chat",
            content=prompt,
            request_id=request_id,
        )
        self.client = ChatModelClient(self.endpoint)
        self.async_cleanups.append((self.client.aclose, ()))
        run = runner.TurnRun(
            turn,
            client=self.client,
            on_disconnect=on_disconnect,
            log=log or MemoryEventLog(),
            lease=lease,
        )
        return run.start()

    async def answer(self, request_id: str) -> Message:
        return await Message.objects.aget(request_id=request_id, is_answer=True)

    async def wait_until_saved(self, request_id: str, within: float = 5) -> Message:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            message = await self.answer(request_id)
            if message.status != Message.Status.STREAMING:
                return message
            self.assertLess(asyncio.get_running_loop().time(), deadline, "never saved")
            await asyncio.sleep(0.02)

    async def read_deltas(self, run: runner.TurnRun, count: int) -> list:
        events = []
        async for batch in run.follow(0, keepalive_seconds=5):
            events.extend(batch)
            if sum(e.name == "delta" for e in events) >= count:
                return events
        self.fail("the turn ended early")

    async def devllm_record(self, request_id: str) -> dict:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{self.devllm.url}/_devllm/requests/{request_id}")
        return response.json()

    @closing_afterwards
    async def test_events_are_numbered_and_the_turn_is_saved_before_the_final_one(self):
        run = await self.start_run("runner-order-01", SHORT)
        seen = []
        async for batch in run.follow(0, keepalive_seconds=5):
            for event in batch:
                seen.append(event)
                if event.final:
                    # Read back before the runner goes on: the save already happened.
                    message = await self.answer("runner-order-01")
                    self.assertEqual(message.status, Message.Status.COMPLETED)
        self.assertEqual([e.id for e in seen], list(range(1, len(seen) + 1)))
        self.assertIsNone(registry.find(user_id=self.user.pk, request_id="runner-order-01"))
        self.assertEqual(seen[0].name, "start")
        self.assertEqual((seen[-1].name, seen[-1].data["status"]), ("done", "completed"))
        text = "".join(e.data["content"] for e in seen if e.name == "delta")
        self.assertEqual(text, message.content)

    @closing_afterwards
    async def test_every_event_reaches_the_event_log_with_the_same_ids(self):
        log = RedisEventLog.from_url(settings.REDIS_URL, key_prefix="test-runner")
        self.async_cleanups.append((log.aclose, ()))
        run = await self.start_run("runner-log-0001", SHORT, log=log)
        key = runner.turn_key(self.user.pk, "runner-log-0001")
        self.async_cleanups.append((log.delete, (key,)))
        live = [e async for batch in run.follow(0, keepalive_seconds=5) for e in batch]
        await run._task
        logged = [decode(e) async for e in log.read(key)]
        self.assertEqual(logged, live)
        self.assertTrue(logged[-1].final)

    @closing_afterwards
    async def test_events_that_arrive_during_an_append_go_in_the_next_one(self):
        log = SlowLog(append_seconds=0.1)
        run = await self.start_run("runner-batch-01", LONG, log=log)
        events = [e async for batch in run.follow(0, keepalive_seconds=5) for e in batch]
        await run._task
        # About 60 chunks over 1.2 s, with each append taking 0.1 s: far fewer appends.
        self.assertLess(log.appends, len(events) / 3)
        key = runner.turn_key(self.user.pk, "runner-batch-01")
        self.assertEqual([decode(e) async for e in log.read(key)], events)

    @closing_afterwards
    async def test_the_runner_renews_its_stream_lease_and_gives_it_back_at_the_end(self):
        # Renewed every 0.1 s, a 0.6 s lease holds through renewals half a second late.
        store = MemoryStreamLeases(lease_seconds=0.6)
        lease = HeldLease(store, store.acquire(self.user.pk, 1))
        with mock.patch.object(leases, "RENEW_EVERY_SECONDS", 0.1):
            run = await self.start_run("runner-lease-01", LONG, lease=lease)
            await self.read_deltas(run, 45)  # over 0.9 s in: past the lease's first term
            self.assertEqual(store.held(self.user.pk), 1, "the running turn lost its lease")
            await run._task
        self.assertEqual(store.held(self.user.pk), 0)

    @closing_afterwards
    async def test_stop_closes_the_model_stream_and_saves_the_partial_answer(self):
        run = await self.start_run("runner-stop-001")
        seen = await self.read_deltas(run, 3)
        run.stop()
        async for batch in run.follow(seen[-1].id, keepalive_seconds=5):
            seen.extend(batch)
        self.assertEqual((seen[-1].name, seen[-1].data["status"]), ("done", "stopped"))
        message = await self.answer("runner-stop-001")
        self.assertEqual(message.status, Message.Status.STOPPED)
        self.assertEqual(message.content, "".join(e.data["content"] for e in seen[1:-1]))
        deadline = asyncio.get_running_loop().time() + 2
        while not (await self.devllm_record("runner-stop-001"))["client_disconnected"]:
            self.assertLess(asyncio.get_running_loop().time(), deadline, "the model went on")
            await asyncio.sleep(0.02)

    @closing_afterwards
    async def test_a_stop_before_the_model_is_asked_saves_an_empty_stopped_answer(self):
        run = await self.start_run("runner-early-01")
        run.stop()  # the owner task has not run yet
        message = await self.wait_until_saved("runner-early-01")
        self.assertEqual((message.status, message.content), (Message.Status.STOPPED, ""))
        await run._task  # the final event follows the save
        self.assertEqual(run.events[-1].data["status"], "stopped")

    @closing_afterwards
    async def test_with_continue_the_answer_outlives_its_only_reader(self):
        run = await self.start_run("runner-cont-001", on_disconnect="continue")
        stream = follow_run(run, SiteEventEncoder(), keepalive_seconds=5)
        self.assertIn(b"event: start", await anext(stream))
        stream.close()  # the client went away after the first event
        message = await self.wait_until_saved("runner-cont-001", within=10)
        self.assertEqual(message.status, Message.Status.COMPLETED)
        self.assertTrue((await self.devllm_record("runner-cont-001"))["finished"])

    @closing_afterwards
    async def test_with_cancel_the_answer_stops_when_its_last_reader_leaves(self):
        run = await self.start_run("runner-cncl-001", on_disconnect="cancel")
        first = follow_run(run, SiteEventEncoder(), keepalive_seconds=5)
        second = follow_run(run, SiteEventEncoder(), keepalive_seconds=5)
        await self.read_deltas(run, 2)
        first.close()
        await asyncio.sleep(0.2)
        self.assertIsNone(run.status, "one reader left, another still reads")
        second.close()
        message = await self.wait_until_saved("runner-cncl-001", within=2)
        self.assertEqual(message.status, Message.Status.STOPPED)
        self.assertTrue(message.content)

    @closing_afterwards
    async def test_a_reader_back_within_the_grace_period_keeps_the_answer_going(self):
        run = await self.start_run("runner-grace-01", on_disconnect=0.5)
        reader = follow_run(run, SiteEventEncoder(), keepalive_seconds=5)
        await self.read_deltas(run, 2)
        reader.close()
        await asyncio.sleep(0.2)
        back = follow_run(run, SiteEventEncoder(), keepalive_seconds=5)
        await asyncio.sleep(0.6)  # past the grace period: it was cancelled when `back` came
        self.assertIsNone(run.status)
        async for _ in back:
            pass
        self.assertEqual((await self.answer("runner-grace-01")).status, "completed")

    @closing_afterwards
    async def test_nobody_back_within_the_grace_period_stops_the_answer(self):
        run = await self.start_run("runner-grace-02", on_disconnect=0.3)
        reader = follow_run(run, SiteEventEncoder(), keepalive_seconds=5)
        await self.read_deltas(run, 2)
        reader.close()
        left_at = asyncio.get_running_loop().time()
        message = await self.wait_until_saved("runner-grace-02", within=3)
        waited = asyncio.get_running_loop().time() - left_at
        self.assertEqual(message.status, Message.Status.STOPPED)
        self.assertGreaterEqual(waited, 0.3)

    @closing_afterwards
    async def test_an_owner_cancelled_twice_by_a_shutdown_still_saves_the_turn(self):
        run = await self.start_run("runner-kill-001")
        await self.read_deltas(run, 3)
        run._task.cancel()  # as the event loop's shutdown does, not a Stop
        for _ in range(1000):  # let the first cancellation reach the owner's finally
            if not run._reading:
                break
            await asyncio.sleep(0)
        self.assertFalse(run._reading, "the owner never began to finish")
        run._task.cancel()  # lands in the save
        with contextlib.suppress(asyncio.CancelledError):
            await run._task
        message = await self.wait_until_saved("runner-kill-001")
        # The server's own end, not a user's Stop.
        self.assertEqual(message.status, Message.Status.INTERRUPTED)
        self.assertEqual(message.error, "The server stopped while answering.")
        self.assertTrue(message.content)

    @closing_afterwards
    async def test_an_interrupted_turn_saves_what_its_readers_got_and_tells_them_why(self):
        """The end of a shutdown's grace period: the model is let go, the partial answer
        saved as interrupted, and readers get an `error` event saying the server restarts."""
        run = await self.start_run("runner-intr-001")
        events = await self.read_deltas(run, 3)
        run.interrupt()
        async for batch in run.follow(events[-1].id, keepalive_seconds=5):
            events.extend(batch)
        final = events[-1]
        message = await self.answer("runner-intr-001")
        self.assertEqual((final.name, final.data["status"]), ("error", "interrupted"))
        self.assertIn("restarting", final.data["message"])
        self.assertEqual(final.data["record"], "saved")
        self.assertEqual(message.status, Message.Status.INTERRUPTED)
        self.assertEqual(message.content, "".join(e.data["content"] for e in events[1:-1]))
        deadline = asyncio.get_running_loop().time() + 2
        while not (await self.devllm_record("runner-intr-001"))["client_disconnected"]:
            self.assertLess(asyncio.get_running_loop().time(), deadline, "the model went on")
            await asyncio.sleep(0.02)

    @closing_afterwards
    async def test_an_interrupt_before_the_model_is_asked_still_saves_the_turn(self):
        run = await self.start_run("runner-intr-002")
        run.interrupt()  # no await since start(): the owner has not run yet
        events = [e async for batch in run.follow(0, keepalive_seconds=5) for e in batch]
        message = await self.answer("runner-intr-002")
        self.assertEqual([e.name for e in events], ["start", "error"])
        self.assertEqual((message.status, message.content), ("interrupted", ""))

    @closing_afterwards
    async def test_a_model_that_does_not_start_within_the_first_token_deadline_fails(self):
        turn = await sync_to_async(services.turn_start)(
            user=self.user,
            conversation_id=None,
            model_key="dev/dev-chat",
            content="[[devllm hang_before]] Anyone?",
            request_id="runner-ftd-0001",
        )
        self.client = ChatModelClient(self.endpoint)
        self.async_cleanups.append((self.client.aclose, ()))
        run = runner.TurnRun(
            turn, client=self.client, log=MemoryEventLog(), first_token_deadline=0.5
        ).start()
        events = [e async for batch in run.follow(0, keepalive_seconds=5) for e in batch]
        # The deadline's own message: not the read timeout (5 s), which says something else.
        self.assertEqual(events[-1].name, "error")
        self.assertIn("did not start answering within 0.5 seconds", events[-1].data["message"])
        self.assertEqual(events[-1].data["http_status"], 504)
        message = await self.answer("runner-ftd-0001")
        self.assertEqual(message.status, Message.Status.FAILED)
