"""The pipeline driven directly: cancellation edge cases a live server cannot time exactly."""

import asyncio
import contextlib
import tempfile
from pathlib import Path

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import TransactionTestCase

from conversations import services, streaming
from conversations.encoders import SiteEventEncoder
from conversations.models import Message
from conversations.providers import ChatModelClient
from conversations.providers.config import development_endpoints
from tests.conftest import PASSWORD
from tests.servers import start_devllm


class StreamTurnCancellationTests(TransactionTestCase):
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

    async def start_stream(self, request_id: str):
        turn = await sync_to_async(services.turn_start)(
            user=self.user,
            conversation_id=None,
            model_key="dev/dev-chat",
            content="Tell me something long.",
            request_id=request_id,
        )
        client = ChatModelClient(self.endpoint)
        run = streaming.TurnRun(turn, client=client)
        return (
            streaming.stream_turn(run, encoder=SiteEventEncoder(), keepalive_seconds=5),
            client,
        )

    async def answer(self, request_id: str) -> Message:
        return await Message.objects.aget(request_id=request_id, role="assistant")

    async def wait_until_saved(self, request_id: str) -> Message:
        for _ in range(100):
            message = await self.answer(request_id)
            if message.status != Message.Status.STREAMING:
                return message
            await asyncio.sleep(0.05)
        self.fail("the turn was never saved")

    async def test_a_second_cancellation_during_the_save_does_not_lose_the_turn(self):
        events, client = await self.start_stream("cancel-twice-01")
        three_deltas = asyncio.Event()

        async def consume():
            deltas = 0
            async for chunk in events:
                deltas += chunk.count(b"event: delta")
                if deltas >= 3:
                    three_deltas.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(three_deltas.wait(), timeout=10)
        task.cancel()
        for _ in range(1000):  # let the first cancellation reach the generator's finally
            if streaming._finishing:
                break
            await asyncio.sleep(0)
        self.assertTrue(streaming._finishing, "the finishing task never started")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

        message = await self.wait_until_saved("cancel-twice-01")
        self.assertEqual(message.status, Message.Status.STOPPED)
        self.assertTrue(message.content)
        await client.aclose()

    async def test_a_generator_closed_by_its_owner_saves_the_partial_answer(self):
        # Django closes its own wrapper when a disconnect lands inside send(); our generator
        # is then finalised later with GeneratorExit instead of CancelledError.
        events, client = await self.start_stream("closed-gen-0001")
        async for chunk in events:
            if b"event: delta" in chunk:
                break
        await events.aclose()

        message = await self.wait_until_saved("closed-gen-0001")
        self.assertEqual(message.status, Message.Status.STOPPED)
        self.assertTrue(message.content)
        await client.aclose()

    async def test_the_turn_is_saved_before_the_client_hears_that_it_ended(self):
        events, client = await self.start_stream("saved-first-01")
        async for chunk in events:
            if b"event: done" in chunk:
                # Read back before the generator is resumed: the save already happened.
                message = await self.answer("saved-first-01")
                self.assertEqual(message.status, Message.Status.COMPLETED)
                self.assertTrue(message.content)
                break
        else:
            self.fail("the stream sent no done event")
        await events.aclose()
        await client.aclose()

    async def test_a_stream_closed_right_after_its_start_event_is_saved(self):
        events, client = await self.start_stream("after-start-001")
        first = await anext(events)
        self.assertIn(b"event: start", first)
        await events.aclose()

        message = await self.wait_until_saved("after-start-001")
        self.assertEqual(message.status, Message.Status.STOPPED)
        self.assertEqual(message.content, "")
        await client.aclose()
