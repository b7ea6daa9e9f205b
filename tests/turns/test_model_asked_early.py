"""An API call's model is asked while its prompt is saved (turn_starts.ModelAsk): the model's
time to the first token overlaps the save, and a save that fails hangs up on the model and
leaves nothing half-written. Real PostgreSQL (a save in a worker thread) and the development
LLM server over HTTP; a barrier holds the save at a chosen point."""

import asyncio
import tempfile
import threading
from pathlib import Path

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import TransactionTestCase, override_settings

from conversations import providers, services
from conversations.accounts.leases import stream_leases
from conversations.exceptions import DuplicateRequest
from conversations.models import Message
from conversations.turns.start import ModelAsk, begin_turn, start_run
from conversations.web.chat_requests import chat_payload, chat_turn_starter
from tests.conftest import PASSWORD
from tests.servers import start_devllm

# It starts the development LLM server.
pytestmark = pytest.mark.live

PROMPT = "[[devllm tokens=20 delay_ms=5]] Are you there?"


class ModelAskedEarlyTests(TransactionTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.devllm = start_devllm(Path(tempfile.mkdtemp()), delay_ms=5)
        cls.settings = override_settings(DEVLLM_URL=f"{cls.devllm.url}/v1", LLM_ENDPOINTS_FILE="")
        cls.settings.enable()

    @classmethod
    def tearDownClass(cls):
        cls.settings.disable()
        cls.devllm.stop()
        super().tearDownClass()

    def setUp(self):
        self.user = get_user_model().objects.create_user("erin", password=PASSWORD)
        providers.endpoints.cache_clear()
        providers.client_for.cache_clear()

    def tearDown(self):
        providers.client_for.cache_clear()

    async def close_model_client(self):
        # The shared client's connections belong to this test's event loop.
        await providers.client_for("dev").aclose()

    async def saved_rows(self, request_id: str) -> int:
        """Rows of the request, read in a thread of its own: the thread the save runs in is
        held by the barrier."""

        def count() -> int:
            try:
                return Message.objects.filter(request_id=request_id).count()
            finally:
                connections.close_all()

        return await asyncio.to_thread(count)

    async def wait_for_record(self, request_id: str, ready) -> dict:
        """Poll the development server's record of the request until `ready(record)`."""
        async with asyncio.timeout(5):
            # Another process's state: there is no event to wait on.
            while not ready(record := await self.devllm_record(request_id)):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        return record

    def saved_after(self, held: threading.Event, holding: threading.Event, request_id: str):
        """The prompt save of a /v1 call, held until `held` is set."""
        messages = [{"role": "user", "content": PROMPT}]

        def save():
            holding.set()
            held.wait(5)
            return services.prompt_turn_start(
                user=self.user, model_key="dev/dev-chat", messages=messages, request_id=request_id
            )

        return save, ModelAsk("dev/dev-chat", messages, request_id)

    async def devllm_record(self, request_id: str) -> dict:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{self.devllm.url}/_devllm/requests/{request_id}")
        return response.json()

    async def test_the_model_is_asked_while_the_prompt_is_saved(self):
        held, holding = threading.Event(), threading.Event()
        save, ask = self.saved_after(held, holding, "asked-early-0001")

        starting = asyncio.create_task(begin_turn(self.user, save, ask=ask))
        await asyncio.to_thread(holding.wait, 5)
        # The save is held: the model has the request all the same, and is answering.
        try:
            await self.wait_for_record("asked-early-0001", lambda r: r.get("tokens_sent", 0))
            self.assertEqual(await self.saved_rows("asked-early-0001"), 0)
            held.set()
            turn, admission = await starting
            run = await start_run(turn, admission, surface="v1")
            await run.wait_saved()
        finally:
            held.set()
            await self.close_model_client()

        answer = await Message.objects.aget(request_id="asked-early-0001", is_answer=True)
        self.assertEqual(answer.status, Message.Status.COMPLETED)
        # Timed from the asking, before the save: the save's hold is inside both timings.
        self.assertGreaterEqual(answer.duration_ms, answer.time_to_first_token_ms)
        self.assertGreater(answer.time_to_first_token_ms, 0)
        self.assertEqual(answer.completion_tokens, 20)
        self.assertTrue((await self.devllm_record("asked-early-0001"))["finished"])
        self.assertEqual(await asyncio.to_thread(stream_leases().held, self.user.pk), 0)

    async def test_a_save_that_fails_hangs_up_on_the_model_and_writes_nothing(self):
        await sync_to_async(services.prompt_turn_start)(
            user=self.user,
            model_key="dev/dev-chat",
            messages=[{"role": "user", "content": "First"}],
            request_id="asked-early-0002",
        )
        held, holding = threading.Event(), threading.Event()
        # The same request ID again: the save fails (DuplicateRequest) once released.
        save, ask = self.saved_after(held, holding, "asked-early-0002")
        ask = ModelAsk(
            "dev/dev-chat",
            [{"role": "user", "content": "[[devllm tokens=400 delay_ms=10]] Long"}],
            "asked-early-0002",
        )

        starting = asyncio.create_task(begin_turn(self.user, save, ask=ask))
        await asyncio.to_thread(holding.wait, 5)
        try:
            await self.wait_for_record("asked-early-0002", lambda r: r.get("tokens_sent", 0))
            held.set()
            with self.assertRaises(DuplicateRequest):
                await starting
            record = await self.wait_for_record(
                "asked-early-0002", lambda r: r["client_disconnected"]
            )
        finally:
            held.set()
            await self.close_model_client()

        self.assertFalse(record["finished"])
        # The first call's question and answer; nothing of the second.
        self.assertEqual(await self.saved_rows("asked-early-0002"), 2)
        self.assertEqual(await asyncio.to_thread(stream_leases().held, self.user.pk), 0)


@pytest.mark.django_db
def test_a_new_chats_first_message_is_asked_early_with_the_history_the_save_reads(alice):
    payload = chat_payload({"message": "  Hello there  ", "model": "dev/dev-chat"})

    start, ask, _ = chat_turn_starter(alice, "first-0001", **payload)
    turn = start()

    assert ask is not None
    assert ask.messages == turn.history  # what the model would have been asked after the save
    assert (ask.model_key, ask.request_id) == ("dev/dev-chat", "first-0001")
    going_on = chat_payload({"message": "More", "conversation": turn.conversation_id})
    # Its history is read in the save.
    assert chat_turn_starter(alice, "first-0002", **going_on).ask is None
    regenerate = {"action": "regenerate", "conversation": turn.conversation_id}
    assert chat_turn_starter(alice, "first-0003", **chat_payload(regenerate)).ask is None
