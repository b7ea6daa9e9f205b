"""OpenAI's Responses API over any chat-completions upstream, with a user's API key.

    POST /v1/responses                  answer `input` (stream, background, previous_response_id)
    GET  /v1/responses/<id>             the Response; with ?stream=true its typed events,
                                        after ?starting_after=N, from any server process
    POST /v1/responses/<id>/cancel      stop a running response, wherever it runs

A response is a turn like every other (conversations.turns.start, runner.TurnRun): admitted
under the user's limits, saved by the runner, followed through the event log and stopped
through the channel layer. Its id is `resp_<request ID>`, so any process can find its turn and
its saved answer. Its messages are saved as an API conversation's (conversations.threads), and
`previous_response_id` continues that conversation. The request's own fields that a Response
repeats (instructions, metadata, ...) are kept in the cache for a day; after that a Response
read back shows their defaults. Errors are OpenAI's, as on /v1/chat/completions.
"""

import dataclasses
import logging
import time
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse

from conversations import providers, selectors, services
from conversations.exceptions import InvalidChatRequest, TurnEventsGone, TurnNotFound
from conversations.http import parse_json_object, sse_response
from conversations.models import Message
from conversations.turns import registry
from conversations.turns.eventlog import TurnLogGap, TurnLogNotFound
from conversations.turns.events import Done, Failed, replay
from conversations.turns.readers import TurnStream, follow_run, open_answer_stream
from conversations.turns.runner import CONTINUE, TurnRun
from conversations.turns.start import ModelAsk, begin_turn, start_run
from conversations.usage import TokenUsage
from conversations.v1.chat_completions import stream_once_answered, upstream_error, v1_view
from conversations.v1.responses_events import (
    ResponseEventEncoder,
    ResponseMeta,
    final_response,
    response_object,
    row_response,
)
from conversations.v1.responses_schema import (
    ResponseRequest,
    parse_response_request,
    parse_retrieve_query,
)

logger = logging.getLogger(__name__)

ECHO_SECONDS = 24 * 3600


@v1_view("POST")
async def responses(
    request: HttpRequest, user: AbstractBaseUser, *, request_id: str
) -> HttpResponse:
    """Answer a request: its Response when the turn ends, its typed events as they come, or
    at once, queued, for a background response nobody streams."""
    parsed = parse_response_request(
        parse_json_object(request),
        max_chars=settings.CHAT_MAX_MESSAGE_CHARS,
        max_messages=settings.CHAT_MAX_PROMPT_MESSAGES,
    )
    # An unknown model costs no rate-limit request; an alias (a bare upstream id) is answered
    # and saved under the model's own id.
    parsed = dataclasses.replace(parsed, model=providers.get_model(parsed.model).key)
    run, headers = await _start(user, parsed, request_id)
    meta = ResponseMeta(
        request_id=request_id, model=parsed.model, created_at=int(time.time()), echo=parsed.echo
    )
    if parsed.background and not parsed.stream:
        await _remember(user, meta)
        return JsonResponse(response_object(meta, status="queued"), headers=headers)
    # This response reads the turn from now on: a client that leaves is a reader leaving, and
    # the turn's disconnect policy applies (cancel, or continue for a background response).
    stream = follow_run(
        run, ResponseEventEncoder(meta), keepalive_seconds=settings.SSE_KEEPALIVE_SECONDS
    )
    try:
        await _remember(user, meta)
        if not parsed.stream:
            return await _complete(run, stream, meta, headers)
    except BaseException:
        stream.close()
        raise
    return await stream_once_answered(run, stream, request_id=request_id, headers=headers)


async def _start(
    user: AbstractBaseUser, parsed: ResponseRequest, request_id: str
) -> tuple[TurnRun, dict[str, str]]:
    """Start the response's turn: its prompt continues the previous response's conversation
    when it names one. Return the run and the response's headers."""
    thread: list[dict[str, str]] = []
    if parsed.previous_response_id is not None:
        thread = await sync_to_async(response_thread)(
            user=user, response_id=parsed.previous_response_id
        )
    messages = parsed.messages(thread)
    if len(messages) > settings.CHAT_MAX_PROMPT_MESSAGES:
        raise InvalidChatRequest(
            f"The conversation would have {len(messages)} messages; this server takes at most "
            f"{settings.CHAT_MAX_PROMPT_MESSAGES}.",
            field="previous_response_id",
        )
    turn, admission = await begin_turn(
        user,
        lambda: services.prompt_turn_start(
            user=user, model_key=parsed.model, messages=messages, request_id=request_id
        ),
        # The whole history is known: the model is asked while it is saved.
        ask=ModelAsk(parsed.model, messages, request_id, parsed.params),
    )
    run = await start_run(
        turn,
        admission,
        surface="v1",
        params=parsed.params,
        on_disconnect=CONTINUE if parsed.background else None,
    )
    return run, admission.headers | {"X-Request-ID": request_id}


async def _complete(
    run: TurnRun, stream: TurnStream, meta: ResponseMeta, headers: dict[str, str]
) -> HttpResponse:
    """Wait for the turn to end and answer with its Response; a failure before any text is
    the status that says why, as on /v1/chat/completions."""
    await stream.drain()
    if (failure := run.failure_before_answer()) is not None:
        return upstream_error(failure, headers)
    finished, ending = run.finished, run.events[-1]
    assert finished is not None and isinstance(ending, Done | Failed)  # the stream drained
    body = final_response(meta, finished.content, ending)
    if body["usage"] is not None:
        headers = headers | finished.usage.headers()
    return JsonResponse(body, headers=headers)


@v1_view("GET")
async def response(
    request: HttpRequest, user: AbstractBaseUser, response_id: str, *, request_id: str
) -> HttpResponse:
    """Return one of the user's Responses, or stream its events after `starting_after`."""
    stream, starting_after = parse_retrieve_query(request.GET)
    answer = await sync_to_async(find_answer)(user=user, response_id=response_id)
    meta = await _recall(user, answer)
    if not stream:
        return _row_json(meta, answer, request_id)
    encoder = ResponseEventEncoder(meta, starting_after=starting_after)
    return sse_response(await _replay(user, answer, encoder), request_id=request_id)


async def _replay(
    user: AbstractBaseUser, answer: Message, encoder: ResponseEventEncoder
) -> AsyncIterator[bytes]:
    """Follow the response's turn from its first event, wherever it runs; replay its saved
    row when its events have expired."""
    try:
        stream = await open_answer_stream(
            answer, after=0, encoder=encoder, keepalive_seconds=settings.SSE_KEEPALIVE_SECONDS
        )
    except (TurnLogNotFound, TurnLogGap):
        await answer.arefresh_from_db()
        if answer.status != Message.Status.STREAMING:
            return _once(encoder.encode(replay(answer)))
        raise TurnEventsGone(
            "This response's events are not available while it runs: the server "
            "writing it may have stopped. Retrieve it without stream instead.",
            field="response_id",
        ) from None
    if stream is None:  # nothing after event 0 is impossible for a turn that started
        await answer.arefresh_from_db()
        return _once(encoder.encode(replay(answer)))
    return stream


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


@v1_view("POST")
async def response_cancel(
    request: HttpRequest, user: AbstractBaseUser, response_id: str, *, request_id: str
) -> HttpResponse:
    """Stop one of the user's responses wherever it runs, and return it as it ended: a
    stopped answer is "cancelled". OpenAI cancels only background responses and refuses the
    others; chatsite stops any running one, and returns a finished one unchanged."""
    answer = await sync_to_async(find_answer)(user=user, response_id=response_id)
    if answer.status == Message.Status.STREAMING:
        await registry.stop_and_wait(answer)
    meta = await _recall(user, answer)
    return _row_json(meta, answer, request_id)


def _row_json(meta: ResponseMeta, answer: Message, request_id: str) -> JsonResponse:
    body = row_response(meta, answer)
    headers = {"X-Request-ID": request_id}
    if body["usage"] is not None:
        headers |= TokenUsage.of_message(answer).headers()
    return JsonResponse(body, headers=headers)


# --- reads ----------------------------------------------------------------------------------


def find_answer(*, user: AbstractBaseUser, response_id: str, param: str = "response_id") -> Message:
    """Return the user's answer that a Response id names; another user's, or none, is a
    404 in OpenAI's words."""
    if response_id.startswith("resp_"):
        try:
            return selectors.answer_for_request(
                user=user, request_id=response_id.removeprefix("resp_")
            )
        except TurnNotFound:
            pass
    raise TurnNotFound(f"No response found with id '{response_id}'.", field=param)


def response_thread(*, user: AbstractBaseUser, response_id: str) -> list[dict[str, str]]:
    """Return the thread a completed response of the user's ended, as its model saw it: its
    conversation's messages up to and including its answer, without the answers that failed
    or were stopped on the way (their prompts were retried). A prompt that begins with exactly
    this thread continues the same API conversation (see services.prompt_turn_start)."""
    answer = find_answer(user=user, response_id=response_id, param="previous_response_id")
    if answer.status != Message.Status.COMPLETED:
        raise InvalidChatRequest(
            f"Previous response '{response_id}' is {answer.status}; only a completed response "
            "can be continued.",
            field="previous_response_id",
        )
    limit = settings.CHAT_MAX_PROMPT_MESSAGES
    rows = list(
        Message.objects.filter(conversation_id=answer.conversation_id, pk__lte=answer.pk)
        .filter(Q(superseded_at__isnull=True) | Q(pk=answer.pk))
        .exclude(Q(is_answer=True) & ~Q(status=Message.Status.COMPLETED))
        .order_by("pk")
        .values_list("role", "content")[: limit + 1]
    )
    if len(rows) > limit:
        raise InvalidChatRequest(
            f"The conversation of '{response_id}' has more than {limit} messages, the most "
            "this server sends.",
            field="previous_response_id",
        )
    return [{"role": role, "content": content} for role, content in rows]


# --- the request's repeated fields ------------------------------------------------------------


def _echo_key(user_id: int, request_id: str) -> str:
    return f"v1-responses:{user_id}:{request_id}"


async def _remember(user: AbstractBaseUser, meta: ResponseMeta) -> None:
    """Keep what the Response repeats from its request, for reads from any process. Best
    effort: without it a Response read back shows the fields' defaults."""
    value = {"created_at": meta.created_at, "echo": meta.echo}
    try:
        await cache.aset(_echo_key(user.pk, meta.request_id), value, ECHO_SECONDS)
    except Exception:
        logger.warning("Could not keep response %s's request fields", meta.id, exc_info=True)


async def _recall(user: AbstractBaseUser, answer: Message) -> ResponseMeta:
    try:
        kept = await cache.aget(_echo_key(user.pk, answer.request_id)) or {}
    except Exception:
        logger.warning("Could not read response %s's request fields", answer.request_id)
        kept = {}
    return ResponseMeta(
        request_id=answer.request_id,
        model=answer.model,
        created_at=kept.get("created_at") or int(answer.created_at.timestamp()),
        echo=kept.get("echo") or {},
    )
