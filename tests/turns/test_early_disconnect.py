"""A client that leaves before its answer's stream starts: the turn is still saved and its
stream slot given back."""

import asyncio
import contextlib
import json
import tempfile
import threading
from pathlib import Path
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.asgi import get_asgi_application
from django.test import Client, TransactionTestCase, override_settings

from conversations import providers, services
from conversations.accounts import limits
from conversations.accounts.leases import stream_leases
from conversations.models import Message
from conversations.turns.start import begin_turn
from tests.conftest import PASSWORD
from tests.servers import start_devllm

# It starts the development LLM server.
pytestmark = pytest.mark.live

CSRF = "a" * 32


async def leave_at_barrier(task: asyncio.Task, barrier) -> None:
    """The client leaves (its task is cancelled) while a barrier holds the turn's start, then
    the barrier opens (an asyncio or a threading Event)."""
    task.cancel()
    await asyncio.sleep(0)
    barrier.set()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class EarlyDisconnectTests(TransactionTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # A model that stays silent until it is hung up on: the client leaves first.
        cls.devllm = start_devllm(Path(tempfile.mkdtemp()))
        cls.model = override_settings(DEVLLM_URL=f"{cls.devllm.url}/v1", LLM_ENDPOINTS_FILE="")
        cls.model.enable()

    @classmethod
    def tearDownClass(cls):
        cls.model.disable()
        cls.devllm.stop()
        super().tearDownClass()

    def setUp(self):
        providers.endpoints.cache_clear()
        providers.client_for.cache_clear()
        self.user = get_user_model().objects.create_user("dora", password=PASSWORD)
        client = Client()
        client.force_login(self.user)
        self.session = client.cookies["sessionid"].value

    def slots_in_use(self) -> int:
        return stream_leases().held(self.user.pk)

    async def wait_until_saved(self, request_id: str) -> Message:
        async with asyncio.timeout(5):
            while True:
                answer = await Message.objects.aget(request_id=request_id, is_answer=True)
                if answer.status != Message.Status.STREAMING:
                    return answer
                await asyncio.sleep(0.02)

    # The chat page's default is to finish an answer whose reader left; "cancel" shows that a
    # response dropped before it was ever read still counts as its reader leaving.
    @override_settings(TURN_DISCONNECT_POLICY={"chat": "cancel", "api": "continue", "v1": "cancel"})
    async def test_leaving_after_the_response_started_but_before_the_stream_saves_it(self):
        body = json.dumps({"message": "[[devllm hang_before]] Are you there?"}).encode()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/chat/stream/",
            "raw_path": b"/chat/stream/",
            "query_string": b"",
            "root_path": "",
            "server": ("testserver", 80),
            "client": ("127.0.0.1", 5555),
            "headers": [
                (b"host", b"testserver"),
                (b"content-type", b"application/json"),
                (b"cookie", f"sessionid={self.session}; csrftoken={CSRF}".encode()),
                (b"x-csrftoken", CSRF.encode()),
                (b"x-request-id", b"early-leave-0001"),
            ],
        }
        response_started = asyncio.Event()
        body_sent = []
        requests = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if requests:
                return requests.pop()
            await response_started.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                response_started.set()
                await asyncio.sleep(0.5)  # the disconnect lands here, before any body is read
            else:
                body_sent.append(message)

        await get_asgi_application()(scope, receive, send)

        answer = await self.wait_until_saved("early-leave-0001")
        self.assertEqual(answer.status, Message.Status.STOPPED)
        self.assertEqual(body_sent, [])
        self.assertTrue(
            await Message.objects.filter(request_id="early-leave-0001", role="user").aexists()
        )
        self.assertEqual(await asyncio.to_thread(self.slots_in_use), 0)
        await providers.client_for("dev").aclose()  # its connections belong to this loop

    async def test_leaving_while_the_prompt_is_saved_records_the_turn_as_stopped(self):
        """A barrier holds the prompt's save; the client leaves then."""
        saving, client_left = threading.Event(), threading.Event()

        def slow_start():
            saving.set()
            client_left.wait(timeout=10)
            return services.turn_start(
                user=self.user,
                conversation_id=None,
                model_key="dev/dev-chat",
                content="Slow to save",
                request_id="early-leave-0002",
            )

        task = asyncio.create_task(begin_turn(self.user, slow_start))
        self.assertTrue(await asyncio.to_thread(saving.wait, 10))
        await leave_at_barrier(task, client_left)

        self.assertTrue(task.cancelled())
        answer = await Message.objects.aget(request_id="early-leave-0002", role="assistant")
        self.assertEqual(answer.status, Message.Status.STOPPED)
        self.assertEqual(await asyncio.to_thread(self.slots_in_use), 0)

    async def test_leaving_during_admission_gives_the_stream_lease_back(self):
        """A barrier holds the admission after it took a lease; the client leaves then.
        Nothing is saved, and the lease is given back."""
        real_count_and_lease = limits._count_and_lease
        lease_taken, client_left = asyncio.Event(), asyncio.Event()
        saved = []

        async def count_and_lease_then_wait(*args, **kwargs):
            counted = await real_count_and_lease(*args, **kwargs)
            lease_taken.set()
            await client_left.wait()
            return counted

        with mock.patch.object(limits, "_count_and_lease", count_and_lease_then_wait):
            task = asyncio.create_task(begin_turn(self.user, lambda: saved.append(1)))
            async with asyncio.timeout(5):
                await lease_taken.wait()
            self.assertEqual(await asyncio.to_thread(self.slots_in_use), 1)
            await leave_at_barrier(task, client_left)

        self.assertTrue(task.cancelled())
        self.assertEqual(saved, [])
        self.assertEqual(await asyncio.to_thread(self.slots_in_use), 0)
        self.assertFalse(await Message.objects.filter(user=self.user).aexists())
