"""What a streamed /v1 answer costs the server in trips to worker threads, once the process
is warm (the API key's owner and the user's limits kept in the process): Django's
request_started signal, the prompt save, and the final save. Everything else (the key, the
limits, the stream lease, the middleware, the event log) runs on the event loop. Through
Django's async handler and the development LLM server over HTTP."""

import asyncio

import pytest
from asgiref.sync import async_to_sync
from django.db import connections
from django.test import AsyncClient

from conversations import providers
from conversations.models import Message

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def model_on_devllm(settings, devllm):
    settings.DEVLLM_URL, settings.LLM_ENDPOINTS_FILE = f"{devllm.url}/v1", ""
    settings.PROCESS_CACHE_SECONDS = 30
    providers.endpoints.cache_clear()
    providers.client_for.cache_clear()
    yield
    providers.client_for.cache_clear()


def status_of(request_id: str) -> str:
    """The answer's status, read in a thread of its own (not a hop of the request's)."""
    try:
        return Message.objects.get(request_id=request_id, is_answer=True).status
    finally:
        connections.close_all()


def test_a_warm_streamed_answer_takes_three_trips_to_a_thread(
    alice, make_api_key, model_on_devllm, thread_hops
):
    key = make_api_key(alice)

    async def ask(client: AsyncClient, n: int) -> list[str]:
        thread_hops.clear()
        response = await client.post(
            "/v1/chat/completions",
            {
                "model": "dev/dev-chat",
                "stream": True,
                "messages": [{"role": "user", "content": f"[[devllm tokens=5]] Hello {n}"}],
            },
            content_type="application/json",
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200
        body = b"".join([part async for part in response.streaming_content])
        assert b"[DONE]" in body
        request_id = response["X-Request-ID"]
        async with asyncio.timeout(5):
            while await asyncio.to_thread(status_of, request_id) == Message.Status.STREAMING:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        return list(thread_hops)

    async def two_answers() -> list[str]:
        client = AsyncClient()
        try:
            await ask(client, 1)  # the key's owner and the limits are read, then kept
            return await ask(client, 2)
        finally:
            await providers.client_for("dev").aclose()

    hops = async_to_sync(two_answers)()

    assert hops == [
        "Signal.asend.<locals>.sync_send",  # Django's request_started (close_old_connections)
        "_saved_then_released.<locals>.call",  # the prompt save
        "run_in.<locals>.call",  # the final save, on the post-stream threads
    ]
