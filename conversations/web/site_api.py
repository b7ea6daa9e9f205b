"""The site's own JSON API for a user's conversations, by session or API key.

    GET    /api/conversations/                 list (?limit=50&source=web|api&q=words),
                                               newest activity first; the next page with
                                               ?cursor=<next_cursor> (or ?offset=N); q keeps
                                               those whose title or messages have its words
    POST   /api/conversations/                 {message, model?}: start one, answer streamed
    GET    /api/conversations/<id>/            one, with its messages
    PATCH  /api/conversations/<id>/            {title}: rename
    DELETE /api/conversations/<id>/            delete, with its messages
    POST   /api/conversations/<id>/messages/   {message, model?, action?, message_id?}:
                                               continue, answer streamed; action "regenerate"
                                               or "edit" makes a new version of the answer or
                                               question message_id names (without it, the
                                               last); one no longer shown is a 409
    POST   /api/conversations/<id>/versions/   {message_id}: show the branch through that
                                               version of a question or an answer (web
                                               chats); the conversation as GET returns it
    GET    /api/turns/<request_id>/events      follow an answer (re-attach after a reload):
                                               its events after Last-Event-ID (or ?after=N),
                                               live until the last; SSE, or NDJSON with
                                               Accept: application/x-ndjson. 204 when there
                                               is nothing after the given id, 410 when its
                                               events have expired
    POST   /api/turns/<request_id>/stop        stop an answer while it is written, from any
                                               server process; {"status"} says how it ended

Answers stream exactly as on the chat page (see docs/streaming.md). Errors are
{"error": {"message", "field"?}} with the matching HTTP status.
"""

import dataclasses
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse, JsonResponse

from conversations import history, selectors, services
from conversations.accounts.auth import api_key_or_session_user
from conversations.accounts.limits import check_search_rate, count_attach, searching
from conversations.exceptions import InvalidChatRequest, TurnEventsGone, TurnNotFound
from conversations.http import json_api_view, render_json_error, sse_response
from conversations.models import Conversation, Message
from conversations.turns import registry
from conversations.turns.encoders import EventEncoder
from conversations.turns.eventlog import TurnLogGap, TurnLogNotFound
from conversations.turns.readers import TurnStream, open_answer_stream, open_turn_stream
from conversations.usage import TokenUsage
from conversations.web.chat_requests import message_id_of
from conversations.web.views import (
    parse_chat_payload,
    parse_json_object,
    site_encoder,
    stream_chat_turn,
)

MAX_PAGE = 200


def site_api_view(*methods: str):
    """Session or API key, and the site's error shape."""
    return json_api_view(
        *methods, authenticate=api_key_or_session_user, render_error=render_json_error
    )


@site_api_view("GET", "POST")
async def conversations(
    request: HttpRequest, user: AbstractBaseUser, *, request_id: str
) -> HttpResponse:
    if request.method == "POST":
        payload = parse_chat_payload(request)
        if payload["action"] != "send" or payload["conversation"] is not None:
            raise InvalidChatRequest(
                "This starts a new conversation; to continue one, regenerate or edit, "
                "POST to /api/conversations/<id>/messages/.",
                field="conversation" if payload["conversation"] else "action",
            )
        return await stream_chat_turn(
            request, user, request_id=request_id, surface="api", **payload
        )
    params = _page_params(request)
    if params["query"].strip():
        async with searching(user.pk):  # rate-limited, and a few at a time (see there)
            return JsonResponse(await sync_to_async(_searched_page)(user, params))
    return JsonResponse(await sync_to_async(_conversation_page)(user, params))


@site_api_view("GET", "PATCH", "DELETE")
async def conversation(
    request: HttpRequest, user: AbstractBaseUser, pk: int, *, request_id: str
) -> HttpResponse:
    if request.method == "PATCH":
        title = parse_json_object(request).get("title")
        renamed = await sync_to_async(services.conversation_rename)(
            user=user, conversation_id=pk, title=title
        )
        renamed.streaming_request_id = await sync_to_async(selectors.streaming_request_id)(
            conversation=renamed
        )
        return JsonResponse(conversation_json(renamed))
    if request.method == "DELETE":
        await sync_to_async(services.conversation_delete)(user=user, conversation_id=pk)
        return HttpResponse(status=204)
    return JsonResponse(await sync_to_async(_conversation_detail)(user, pk))


@site_api_view("POST")
async def conversation_versions(
    request: HttpRequest, user: AbstractBaseUser, pk: int, *, request_id: str
) -> HttpResponse:
    """Switch the thread to another version of one of its messages ("< 1/2 >" on the page)."""
    message_id = message_id_of(parse_json_object(request), required=True)
    await sync_to_async(services.conversation_show_version)(
        user=user, conversation_id=pk, message_id=message_id
    )
    return JsonResponse(await sync_to_async(_conversation_detail)(user, pk))


@site_api_view("POST")
async def conversation_messages(
    request: HttpRequest, user: AbstractBaseUser, pk: int, *, request_id: str
) -> HttpResponse:
    payload = parse_chat_payload(request, url_conversation=pk)
    return await stream_chat_turn(request, user, request_id=request_id, surface="api", **payload)


MAX_OFFSET = 1_000_000


def _int_param(request: HttpRequest, name: str, *, default: int, maximum: int) -> int:
    raw = request.GET.get(name)
    if raw is None:
        return default
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    if not (raw.isascii() and raw.isdigit()) or int(raw) > maximum:
        raise InvalidChatRequest(f"{name} must be a whole number from 0 to {maximum}.", field=name)
    return int(raw)


def _page_params(request: HttpRequest) -> dict[str, Any]:
    """Read the list's ?limit, offset or cursor, source and q; a bad one is a 400."""
    params: dict[str, Any] = {
        "limit": _int_param(request, "limit", default=50, maximum=MAX_PAGE),
        "offset": _int_param(request, "offset", default=0, maximum=MAX_OFFSET),
        "source": request.GET.get("source"),
        "query": request.GET.get("q", ""),
    }
    if params["source"] is not None and params["source"] not in Conversation.Source.values:
        choices = " or ".join(Conversation.Source.values)
        raise InvalidChatRequest(f"source must be {choices}.", field="source")
    if len(params["query"]) > history.MAX_QUERY_CHARS:
        raise InvalidChatRequest(
            f"q must be at most {history.MAX_QUERY_CHARS} characters.", field="q"
        )
    cursor = request.GET.get("cursor")
    if cursor is not None:
        if "offset" in request.GET:
            raise InvalidChatRequest("Give either cursor or offset, not both.", field="cursor")
        params["after"] = history.Cursor.decode(cursor)
    return params


def _searched_page(user: AbstractBaseUser, params: dict[str, Any]) -> dict[str, Any]:
    check_search_rate(user.pk)
    return _conversation_page(user, params)


def _conversation_page(user: AbstractBaseUser, params: dict[str, Any]) -> dict[str, Any]:
    page, next_cursor = selectors.conversation_page(user=user, **params)
    return {
        "data": [conversation_json(c) for c in page],
        "has_more": next_cursor is not None,
        # Pass it as ?cursor= for the page after this one (null on the last page).
        "next_cursor": next_cursor.encode() if next_cursor else None,
    }


def _conversation_detail(user: AbstractBaseUser, pk: int) -> dict[str, Any]:
    found = selectors.conversation_get(user=user, conversation_id=pk)
    messages = selectors.conversation_thread(conversation=found)
    found.streaming_request_id = selectors.streaming_request_id(conversation=found)
    return conversation_json(found) | {"messages": [message_json(m) for m in messages]}


def conversation_json(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "model": conversation.model,
        "source": conversation.source,
        # The request ID of an answer still being written, to follow it; None when none is.
        "streaming_request_id": getattr(conversation, "streaming_request_id", None),
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
    }


def message_json(message: Message) -> dict[str, Any]:
    versions = getattr(message, "versions", None)
    return {
        "id": message.pk,
        "parent_id": message.parent_id,
        # This message's place among its versions (regenerated answers, edited questions),
        # or None when it has no other version.
        "versions": dataclasses.asdict(versions) if versions else None,
        "role": message.role,
        "content": message.content,
        "reasoning": message.reasoning,
        "status": message.status,
        "finish_reason": message.finish_reason,
        "model": message.model,
        # Shown on answers when the thread has answers from more than one model.
        "model_label": getattr(message, "model_label", message.model),
        "show_model": getattr(message, "show_model", False),
        "request_id": message.request_id,
        # As the live `done` event says it (conversations.usage); None on a question.
        "usage": TokenUsage.json_of(message),
        "time_to_first_token_ms": message.time_to_first_token_ms,
        "duration_ms": message.duration_ms,
        # How long the model thought (its Thinking section says it); None without reasoning.
        "reasoning_ms": message.reasoning_ms,
        "error": message.error,
        "created_at": message.created_at.isoformat(),
    }


@site_api_view("GET")
async def turn_events(
    request: HttpRequest, user: AbstractBaseUser, turn_request_id: str, *, request_id: str
) -> HttpResponse:
    """Follow one of the user's answers from any process: the events after the last one the
    client has, then live until the final one. Another user's answer is a 404."""
    after = _last_event_id(request)
    encoder = site_encoder(request)
    stream = await reattach_turn(user, turn_request_id, after, encoder)
    if stream is None:
        # Nothing follows: a 204 also tells an EventSource to stop reconnecting.
        return HttpResponse(status=204, headers={"X-Request-ID": request_id})
    return sse_response(stream, request_id=request_id, content_type=encoder.content_type)


async def reattach_turn(
    user: AbstractBaseUser, turn_request_id: str, after: int, encoder: EventEncoder
) -> TurnStream | None:
    """Follow one of the user's answers after event `after` (the site API's events endpoint
    and the WebSocket's attach). Another user's answer, or none, is a 404.

    The turn's log is the user's own (keyed by their id and the request ID), so a reader
    whose log is there needs no query: one user re-attaching in a loop costs the database
    nothing, and leaves its connections to everyone's saves. The answer is read only when
    there is no log, to tell a 404 from a 410 (or wait for a log still to come)."""
    await count_attach(user.pk)
    try:
        return await open_turn_stream(
            user_id=user.pk,
            request_id=turn_request_id,
            after=after,
            encoder=encoder,
            keepalive_seconds=settings.SSE_KEEPALIVE_SECONDS,
        )
    except TurnLogGap:
        raise _events_gone(after) from None
    except TurnLogNotFound:
        pass
    answer = await sync_to_async(selectors.answer_for_request)(
        user=user, request_id=turn_request_id
    )
    try:
        return await open_answer_stream(
            answer, after=after, encoder=encoder, keepalive_seconds=settings.SSE_KEEPALIVE_SECONDS
        )
    except TurnLogGap:
        raise _events_gone(after) from None
    except TurnLogNotFound:
        if answer.status != Message.Status.STREAMING:
            raise TurnEventsGone(
                f"This answer ended ({answer.status}) and its events have expired; read "
                "it from its conversation.",
            ) from None
        raise TurnEventsGone(
            "This answer's events are not available: the server writing it may "
            "have stopped. Read what was saved from its conversation.",
        ) from None


def _events_gone(after: int) -> TurnEventsGone:
    return TurnEventsGone(
        f"The events after {after} are no longer kept; read the saved answer from "
        "its conversation.",
        field="last_event_id",
    )


def _last_event_id(request: HttpRequest) -> int:
    """The id of the last event the client has: the Last-Event-ID header (sent by a
    reconnecting EventSource) or ?after=; 0 for everything."""
    raw = request.headers.get("Last-Event-ID", request.GET.get("after", "0")).strip() or "0"
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise InvalidChatRequest(
            "Last-Event-ID (or after) must be the id of an event, a whole number.",
            field="last_event_id",
        )
    return int(raw)


@site_api_view("POST")
async def turn_stop(
    request: HttpRequest, user: AbstractBaseUser, turn_request_id: str, *, request_id: str
) -> HttpResponse:
    """Stop one of the user's answers wherever it runs, and say how it ended.

    The model's stream is closed at once and the partial answer saved as stopped; stopping
    an answer that already ended changes nothing. An answer not found is a 404, another
    user's too; but the Stop is kept for a minute all the same, for the user's own answer
    only: a page that chose its request ID can press Stop a moment after sending, while its
    request is still on its way, and that answer then stops as it starts."""
    try:
        answer = await sync_to_async(selectors.answer_for_request)(
            user=user, request_id=turn_request_id
        )
    except TurnNotFound:
        await registry.request_stop(user_id=user.pk, request_id=turn_request_id)
        raise
    if answer.status == Message.Status.STREAMING:
        await registry.stop_and_wait(answer)
    return JsonResponse({"request_id": answer.request_id, "status": answer.status})
