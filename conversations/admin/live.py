"""The admin's live view of the answers being written now, on every server process.

    GET  running/                 the page (a table that updates itself)
    GET  running/events/          Server-Sent Events: `hello`, then `turn` (a running answer,
                                  new or with new tokens) and `ended`; fed by the channel
                                  layer (conversations.turns.live), never by polling
    GET  running/<pk>/events/     watch the answer <pk> (a Message) stream, wherever it runs:
                                  its events as its owner gets them (start, delta, ..., done)
    POST running/<pk>/stop/       stop it, wherever it runs, as its owner's Stop does

All under the Message admin (/admin/conversations/message/), for staff with its view
permission: the admin's login redirect for anyone else, a 403 for staff without it. Stopping
also needs *stop_turn* ("Can stop a user's running answer"). Every watch and every stop is
recorded as a TurnAudit row, before anything is shown or stopped.
"""

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from conversations import sse
from conversations.exceptions import TurnEventsGone
from conversations.executors import in_post_stream_thread
from conversations.http import json_error, release_connections, request_id_for, sse_response
from conversations.models import Message, TurnAudit
from conversations.turns import live, registry
from conversations.turns.encoders import RETRY_MILLISECONDS, SiteEventEncoder
from conversations.turns.eventlog import TurnLogGap, TurnLogNotFound
from conversations.turns.readers import TurnStream, open_answer_stream

STOP_PERMISSION = "conversations.stop_turn"
# A live list's stream ends after this long, and the page's EventSource reconnects with a
# fresh roll call: no reader holds its channel (and its view of the turns) for days.
LIVE_STREAM_SECONDS = 30 * 60

AsyncView = Callable[..., Awaitable[HttpResponse]]


def urls(model_admin: admin.ModelAdmin) -> list[URLPattern]:
    """The live view's URLs, for the Message admin's get_urls (ahead of its own)."""
    return [
        path(
            "running/",
            model_admin.admin_site.admin_view(functools.partial(running_page, model_admin)),
            name="conversations_running",
        ),
        path(
            "running/events/",
            staff_view(model_admin, running_events),
            name="conversations_running_events",
        ),
        path(
            "running/<int:pk>/events/",
            staff_view(model_admin, watch_events),
            name="conversations_running_watch",
        ),
        path(
            "running/<int:pk>/stop/",
            staff_view(model_admin, stop),
            name="conversations_running_stop",
        ),
    ]


def staff_view(model_admin: admin.ModelAdmin, view: AsyncView) -> AsyncView:
    """The admin's gate (AdminSite.admin_view, which takes only sync views) for an async
    view: the login redirect for anyone who is not active staff, then a JSON 403 without the
    Message admin's view permission; never cached, and CSRF-protected."""
    site = model_admin.admin_site

    async def gate(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        request.user = await request.auser()
        if not site.has_permission(request):
            login = reverse("admin:login", current_app=site.name)
            return redirect_to_login(request.get_full_path(), login)
        if not await sync_to_async(model_admin.has_view_permission)(request):
            return json_error(403, "Watching running answers needs the “view message” permission.")
        return await view(request, *args, **kwargs)

    functools.update_wrapper(gate, view)
    return never_cache(csrf_protect(gate))


def running_page(model_admin: admin.ModelAdmin, request: HttpRequest) -> TemplateResponse:
    """The page: its table is filled and kept up to date by static/conversations/
    admin_running.js, from running_events."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Running answers",
        "opts": model_admin.model._meta,
        "can_stop": request.user.has_perm(STOP_PERMISSION),
        "audit_url": reverse("admin:conversations_turnaudit_changelist"),
    }
    return TemplateResponse(request, "admin/conversations/running_turns.html", context)


# --- the live list ----------------------------------------------------------------------


async def running_events(request: HttpRequest) -> HttpResponse:
    can_stop = await sync_to_async(request.user.has_perm)(STOP_PERMISSION)
    await release_connections()  # the stream holds no database connection
    return sse_response(live_list(can_stop=can_stop), request_id=request_id_for(request))


async def live_list(*, can_stop: bool) -> AsyncIterator[bytes]:
    """The live list's events: `hello` (the reader starts afresh), then a `turn` for each
    running answer, new or with new tokens, and `ended` when one is gone."""
    yield sse.encode_retry(RETRY_MILLISECONDS) + sse.encode_event(
        "hello", {"process": live.process_name()}
    )
    described: dict[int, dict[str, Any]] = {}
    deadline = asyncio.get_running_loop().time() + LIVE_STREAM_SECONDS
    feed = live.follow_running_turns(keepalive_seconds=settings.SSE_KEEPALIVE_SECONDS)
    try:
        async for changes in feed:
            if not changes:
                yield sse.KEEPALIVE
            else:
                if new := {t["message_id"] for k, t in changes if k == "turn"} - described.keys():
                    described |= await in_post_stream_thread(describe, new)
                yield b"".join(
                    sse.encode_event(kind, row(data, described, can_stop=can_stop))
                    if kind == "turn"
                    else sse.encode_event(kind, data)
                    for kind, data in changes
                )
            if asyncio.get_running_loop().time() > deadline:
                return
    finally:
        await feed.aclose()


def describe(message_ids: set[int]) -> dict[int, dict[str, Any]]:
    """What the notices do not carry: each answer's owner and its conversation's source.
    One query per batch of newly seen answers (run by in_post_stream_thread, which gives the
    connection back at once)."""
    rows = Message.objects.filter(pk__in=message_ids).values(
        "pk", "user__username", "conversation__source"
    )
    return {
        r["pk"]: {"user": r["user__username"], "source": r["conversation__source"]} for r in rows
    }


def row(turn: dict[str, Any], described: dict[int, dict[str, Any]], *, can_stop: bool) -> dict:
    """A running answer as the page shows it, with the links it needs."""
    pk = turn["message_id"]
    about = described.get(pk, {"user": f"user {turn['user_id']}", "source": ""})
    return {
        **{k: turn[k] for k in ("key", "request_id", "model", "tokens", "elapsed", "process")},
        **about,
        "conversation": turn["title"] or f"Conversation {turn['conversation_id']}",
        "conversation_url": reverse(
            "admin:conversations_conversation_change", args=[turn["conversation_id"]]
        ),
        "answer_url": reverse("admin:conversations_message_change", args=[pk]),
        "watch_url": reverse("admin:conversations_running_watch", args=[pk]),
        "stop_url": reverse("admin:conversations_running_stop", args=[pk]) if can_stop else None,
    }


# --- watching one answer -----------------------------------------------------------------


async def watch_events(request: HttpRequest, pk: int) -> HttpResponse:
    """Stream an answer's events to staff from any process, as its owner gets them (after
    Last-Event-ID when the page's EventSource reconnects). Each watch is recorded first."""
    request_id = request_id_for(request)
    answer = await _answer(pk)
    if answer is None:
        return json_error(404, "No such answer.")
    await _record(request, answer, TurnAudit.Action.VIEW)
    after = _last_event_id(request)
    await release_connections()
    try:
        stream = await _reattach(answer, after)
    except TurnEventsGone as gone:
        return json_error(gone.status, gone.message)
    if stream is None:  # nothing after `after`: a 204 also stops an EventSource
        return HttpResponse(status=204, headers={"X-Request-ID": request_id})
    return sse_response(stream, request_id=request_id)


async def _reattach(answer: Message, after: int) -> TurnStream | None:
    """The answer's stream from event `after` (None when nothing follows)."""
    try:
        return await open_answer_stream(
            answer,
            after=after,
            encoder=SiteEventEncoder(),
            keepalive_seconds=settings.SSE_KEEPALIVE_SECONDS,
            # Staff look on: a turn whose own client left must not go on for them.
            counts_as_reader=False,
        )
    except (TurnLogGap, TurnLogNotFound):
        raise TurnEventsGone(
            f"This answer is {answer.get_status_display().lower()} and its events "
            "are not kept; read it in its conversation."
        ) from None


def _last_event_id(request: HttpRequest) -> int:
    raw = request.headers.get("Last-Event-ID", "0").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else 0


# --- stopping it -------------------------------------------------------------------------


async def stop(request: HttpRequest, pk: int) -> HttpResponse:
    """Stop an answer wherever it runs (registry.request_stop, as its owner's Stop
    does); recorded first. Answers {"request_id", "status"}: "stopping" while it was
    running, else the status it ended with (and nothing changes)."""
    if request.method != "POST":
        return json_error(405, "Use POST to stop an answer.")
    if not await sync_to_async(request.user.has_perm)(STOP_PERMISSION):
        return json_error(
            403, "Stopping answers needs the “stop a user's running answer” permission."
        )
    answer = await _answer(pk)
    if answer is None:
        return json_error(404, "No such answer.")
    await _record(request, answer, TurnAudit.Action.STOP)
    await release_connections()
    if answer.status != Message.Status.STREAMING:
        return JsonResponse({"request_id": answer.request_id, "status": answer.status})
    await registry.request_stop(user_id=answer.user_id, request_id=answer.request_id)
    return JsonResponse({"request_id": answer.request_id, "status": "stopping"}, status=202)


async def _answer(pk: int) -> Message | None:
    return await Message.objects.filter(pk=pk, is_answer=True).afirst()


async def _record(request: HttpRequest, answer: Message, action: str) -> None:
    await TurnAudit.objects.acreate(
        staff=request.user,
        action=action,
        owner_id=answer.user_id,
        request_id=answer.request_id,
        message=answer,
    )
