"""Starting a turn, the same for every surface (the chat page, the site API, /v1, and any
other): refuse it when the process is draining or full, admit it under the user's limits,
save its prompt, and start its runner. Surfaces parse, authorize and encode; the rules of
starting live here, free of the request object.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from redis.exceptions import RedisError

from conversations import dependencies, providers
from conversations.accounts.limits import Admission, TokenNeed, admit_chat_request
from conversations.exceptions import ServerBusy
from conversations.http import close_request_connections
from conversations.models import Message
from conversations.providers.client import PrefetchedStream
from conversations.records import StartedTurn
from conversations.turns import lifecycle, registry
from conversations.turns.runner import (
    DisconnectPolicy,
    TurnRun,
    finish_unstarted_turn,
    release_or_lapse,
)
from conversations.turns.token_estimate import estimate_prompt_tokens

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelAsk:
    """What the model will be asked, when it is known before the prompt is saved: an API
    call sends its whole history. begin_turn then asks while it saves, so that the model's
    time to its first token overlaps the save instead of following it."""

    model_key: str
    messages: list[dict[str, str]]
    request_id: str
    params: dict[str, Any] = field(default_factory=dict)  # the same as start_run's

    def token_need(self) -> TokenNeed:
        """What this call may cost a daily token quota: its messages, estimated, and its
        answer's limit if the client set one."""
        return TokenNeed(
            prompt=estimate_prompt_tokens(self.messages), answer=answer_limit(self.params)
        )


def answer_limit(params: dict[str, Any]) -> int | None:
    """The answer's token limit a client set (max_completion_tokens or max_tokens), if any."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = params.get(name)
        if type(value) is int and value >= 0:
            return value
    return None


async def begin_turn(
    user: AbstractBaseUser,
    start: Callable[[], StartedTurn],
    *,
    ask: ModelAsk | None = None,
    need: TokenNeed | None = None,
) -> tuple[StartedTurn, Admission]:
    """Admit a request of the user's under their limits, then save its prompt with `start`,
    asking the model meanwhile when `ask` says what to ask.

    Raises ChatError (RateLimited included) having written nothing and holding no lease; a
    model asked early is then hung up on. On success the caller owns the admission's stream
    lease, its place among the process's running turns, and its prefetched model stream,
    all of which start_run hands to the runner; and the request holds no database
    connection: a streaming request must not keep a pooled connection for the whole stream.
    `need` is what the request may cost a daily token quota (see admit_chat_request); by
    default it is estimated from `ask`.
    """
    place = claim_place()
    try:
        turn, admission = await _admit_and_save(user, start, ask, need)
    except BaseException:
        place.release()
        raise
    admission.place = place
    return turn, admission


async def _admit_and_save(
    user: AbstractBaseUser,
    start: Callable[[], StartedTurn],
    ask: ModelAsk | None,
    need: TokenNeed | None,
) -> tuple[StartedTurn, Admission]:
    if need is None and ask is not None:
        need = ask.token_need()
    admitting = asyncio.ensure_future(admit_chat_request(user, need))
    try:
        admission = await asyncio.shield(admitting)
    except asyncio.CancelledError:
        # The client left during admission. The admission goes on regardless (shielded)
        # and may take a stream lease: give it back, or it would count against the user.
        with contextlib.suppress(Exception):
            await (await admitting).lease.release()
        raise
    except RedisError as exc:
        raise dependencies.redis_unreachable(exc) from exc
    prefetched = _ask_early(ask) if ask is not None else None
    if prefetched is not None:
        try:
            # One turn of the loop lets the model's request go out before the save's thread
            # starts. Together they would compete for the GIL, and the save (on the way to
            # the first token) took a millisecond or two longer at one stream.
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            await _hang_up(prefetched)
            await _give_back(admission)
            raise
    saving = asyncio.ensure_future(sync_to_async(_saved_then_released(start))())
    try:
        turn = await asyncio.shield(saving)
    except asyncio.CancelledError:
        # The client left while its prompt was being saved. The save goes on in its thread
        # regardless, so wait for it and record the turn it made as stopped.
        try:
            turn = await saving
        except Exception:
            await _hang_up(prefetched)
            await _give_back(admission)
        else:
            await finish_unstarted_turn(turn, admission.lease.release, prefetched=prefetched)
        raise
    except BaseException:
        # Nothing was saved: the model asked early is hung up on before it says much.
        await _hang_up(prefetched)
        await _give_back(admission)
        raise
    admission.prefetched = prefetched
    return turn, admission


async def _give_back(admission: Admission) -> None:
    await release_or_lapse(admission.lease.release, "a refused request")


def _ask_early(ask: ModelAsk) -> PrefetchedStream | None:
    """Send the model's request now; None when it cannot even be sent (no client for the
    endpoint, say): the prompt is then saved all the same, and the runner, asking after the
    save, meets the same failure and saves the turn as failed. What the user typed is kept."""
    try:
        model = providers.get_model(ask.model_key)
        chunks = providers.client_for(model.endpoint).stream_chat(
            model=model.upstream_id,
            messages=ask.messages,
            request_id=ask.request_id,
            **ask.params,
        )
        return PrefetchedStream(chunks)
    except Exception:
        logger.warning("Asking the model for %s early failed", ask.request_id, exc_info=True)
        return None


async def _hang_up(prefetched: PrefetchedStream | None) -> None:
    if prefetched is not None:
        with contextlib.suppress(Exception):
            await prefetched.aclose()


def _saved_then_released(start: Callable[[], StartedTurn]) -> Callable[[], StartedTurn]:
    """`start`, then the thread's pooled connection given back in the same trip to the
    thread: a streaming request must not keep one for the whole stream."""

    def call() -> StartedTurn:
        try:
            return start()
        finally:
            close_request_connections()

    return call


async def start_run(
    turn: StartedTurn,
    admission: Admission,
    *,
    surface: str,
    params: dict | None = None,
    on_disconnect: DisconnectPolicy | None = None,
) -> TurnRun:
    """Start running the turn whose prompt `begin_turn` saved, under the surface's
    disconnect policy (or `on_disconnect`, for a client that chose, such as a background
    response) and first-token deadline. Should that fail unexpectedly, the turn is
    saved as failed and its lease given back before the error goes on: nothing is left
    streaming."""
    try:
        return TurnRun(
            turn,
            client=providers.client_for(turn.model.endpoint),
            params=params,
            lease=admission.lease,
            on_disconnect=(
                settings.TURN_DISCONNECT_POLICY[surface] if on_disconnect is None else on_disconnect
            ),
            first_token_deadline=settings.FIRST_TOKEN_DEADLINE_SECONDS[surface],
            prefetched=admission.prefetched,
        ).start()
    except Exception:
        await finish_unstarted_turn(
            turn,
            admission.lease.release,
            status=Message.Status.FAILED,
            error=START_FAILED,
            prefetched=admission.prefetched,
        )
        raise
    finally:
        # Registered by now (running_turns counts it), or refused: the claim has done its work.
        if admission.place is not None:
            admission.place.release()


START_FAILED = "The server failed to start this answer."

# How long a client refused for capacity is asked to wait.
CAPACITY_RETRY_AFTER = 5


def claim_place() -> registry.Claim:
    """Claim a place for a new turn in this process, or refuse it with a 503 to retry before
    the request counts against the user's limits or anything is written: while the process
    shuts down, while Redis (the limits, leases and logs) is unreachable, or when it already
    runs or is starting MAX_RUNNING_TURNS."""
    if lifecycle.is_draining():
        raise ServerBusy(
            f"The server is restarting. Try again in {lifecycle.DRAINING_RETRY_AFTER} seconds.",
            headers={"Retry-After": str(lifecycle.DRAINING_RETRY_AFTER)},
        )
    if dependencies.redis_down():
        raise dependencies.redis_unreachable()
    place = registry.claim(settings.MAX_RUNNING_TURNS)
    if place is None:
        raise ServerBusy(
            f"The server is answering as many questions as it can. Try again in "
            f"{CAPACITY_RETRY_AFTER} seconds.",
            headers={"Retry-After": str(CAPACITY_RETRY_AFTER)},
        )
    return place
