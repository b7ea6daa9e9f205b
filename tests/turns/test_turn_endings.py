"""However the ending of a turn fails, the turn still ends: its readers get the final event,
it leaves the registry of running turns, and wait_saved returns within seconds.

Each test breaks one step of the ending, the way it breaks in production: Redis refusing or
hanging as the lease is given back or the final event is logged, the database failing the
save, a hook, the title or staff's notice raising. The model is the development LLM server
over real HTTP; the turn's rows are in the test database.
"""

import asyncio
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from conversations import services
from conversations.accounts.leases import HeldLease, MemoryStreamLeases
from conversations.models import Message
from conversations.providers import ChatModelClient
from conversations.providers.config import development_endpoints
from conversations.records import FinishedTurn
from conversations.turns import live, registry, runner, saving, spool, titles
from conversations.turns.eventlog import MemoryEventLog
from tests.servers import start_devllm

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

ANSWER = "[[devllm tokens=6 delay_ms=10]] A short answer, please."
# The ending must be heard this soon, whatever failed in it (a lease release that hangs is
# given up after a second).
ENDS_WITHIN = 4.0


@pytest.fixture(scope="module")
def model_server():
    server = start_devllm(Path(tempfile.mkdtemp()), delay_ms=10)
    yield server
    server.stop()


class RedisDown(MemoryStreamLeases):
    """Leases whose Redis is gone by the time a lease is given back."""

    async def arelease(self, lease) -> None:
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379.")


class RedisHangs(MemoryStreamLeases):
    """Leases whose Redis no longer answers: the release waits for ever."""

    async def arelease(self, lease) -> None:
        await asyncio.sleep(3600)


class LogDown(MemoryEventLog):
    """An event log whose Redis refuses every append from the final event on."""

    def _store(self, turn_key: str, events: list) -> None:
        if events[-1].final:
            raise redis.exceptions.ConnectionError("Connection refused")
        super()._store(turn_key, events)


def fail(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("a step of the ending failed")


async def afail(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("a step of the ending failed")


def database_down(*args: Any, **kwargs: Any) -> Any:
    from django.db import OperationalError

    raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")


async def database_unreachable() -> bool:
    return False


# (what breaks, how: patches of (object, attribute, replacement), the leases, the log)
FAULTS: dict[str, tuple[list[tuple[Any, str, Callable]], type, type]] = {
    "redis refuses the lease release": ([], RedisDown, MemoryEventLog),
    "redis hangs on the lease release": ([], RedisHangs, MemoryEventLog),
    "redis refuses the final event's append": ([], MemoryStreamLeases, LogDown),
    "the database is down for the save": (
        [
            (services, "save_finished_turn", database_down),
            (saving.dependencies, "database_reachable", database_unreachable),
        ],
        MemoryStreamLeases,
        MemoryEventLog,
    ),
    "the save raises unexpectedly": (
        [(services, "save_finished_turn", fail)],
        MemoryStreamLeases,
        MemoryEventLog,
    ),
    "the durable save itself raises": (
        [(runner, "save_turn_durably", afail)],
        MemoryStreamLeases,
        MemoryEventLog,
    ),
    "the post-stream hooks raise": (
        [(runner, "run_post_stream_hooks", afail)],
        MemoryStreamLeases,
        MemoryEventLog,
    ),
    "the title raises": (
        [(titles, "title_after_first_answer", afail)],
        MemoryStreamLeases,
        MemoryEventLog,
    ),
    "staff's end notice raises": (
        [(live, "turn_ended", fail)],
        MemoryStreamLeases,
        MemoryEventLog,
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_turn_ends_for_its_readers_whatever_fails_in_its_ending(
    fault, model_server, alice, monkeypatch, tmp_path
):
    patches, leases_kind, log_kind = FAULTS[fault]
    for target, name, replacement in patches:
        monkeypatch.setattr(target, name, replacement)
    monkeypatch.setattr(settings, "TURN_SPOOL_DIR", tmp_path / "spool")
    request_id = f"ending-{abs(hash(fault)):x}"[:24]

    async def run_one() -> tuple[list, float, MemoryStreamLeases]:
        turn = await sync_to_async(services.turn_start)(
            user=alice,
            conversation_id=None,
            model_key="dev/dev-chat",
            content=ANSWER,
            request_id=request_id,
        )
        endpoint = development_endpoints(
            devllm_url=f"{model_server.url}/v1", connect_timeout=5, read_timeout=5, max_retries=0
        )[0]
        client = ChatModelClient(endpoint)
        leases = leases_kind(lease_seconds=60)
        lease = HeldLease(leases, leases.acquire(alice.pk, 1))
        try:
            run = runner.TurnRun(turn, client=client, log=log_kind(), lease=lease).start()
            events = []
            async with asyncio.timeout(ENDS_WITHIN + 5):
                async for batch in run.follow(0, keepalive_seconds=1):
                    events.extend(batch)
            started = asyncio.get_running_loop().time()
            async with asyncio.timeout(ENDS_WITHIN):
                await run.wait_saved()
            waited = asyncio.get_running_loop().time() - started
            return events, waited, leases
        finally:
            await client.aclose()

    try:
        events, waited, leases = asyncio.run(run_one())
    finally:
        # The prompt was saved in asgiref's one thread for sync work outside a request:
        # close its connection there, or the test database could not be dropped.
        asyncio.run(sync_to_async(connections.close_all)())

    final = events[-1]
    assert final.final and final.name == "done", final
    assert final.data["status"] == "completed"
    assert waited < ENDS_WITHIN
    assert registry.find(user_id=alice.pk, request_id=request_id) is None
    answer = Message.objects.get(request_id=request_id, is_answer=True)
    if fault == "the database is down for the save":
        assert final.data["record"] == saving.SPOOLED
        assert [turn.request_id for turn in spool_lines()] == [request_id]
    elif fault == "the durable save itself raises":
        assert final.data["record"] == saving.UNSAVED
    elif fault == "the save raises unexpectedly":
        assert final.data["record"] == saving.SPOOLED  # kept on disk: the spool's replay retries
    else:
        assert final.data["record"] == saving.SAVED
        assert answer.status == "completed"
    if leases_kind is MemoryStreamLeases:
        assert leases.held(alice.pk) == 0  # given back; the others lapse by themselves


def spool_lines() -> list:
    turns = []
    for path in spool.pending_files():
        turns += [FinishedTurn(**line) for line in _json_lines(path)]
    return turns


def _json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
