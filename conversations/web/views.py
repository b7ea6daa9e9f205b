"""The chat pages, the endpoint that streams an answer, and the API keys page."""

import base64
import secrets
import time

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import defaults
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from conversations import dependencies, history, providers, selectors
from conversations.accounts import apikeys
from conversations.accounts.auth import session_user
from conversations.exceptions import InvalidChatRequest
from conversations.http import (
    json_api_view,
    json_error,
    openai_error,
    parse_json_object,
    render_json_error,
    request_id_for,
    sse_response,
)
from conversations.models import Conversation
from conversations.turns import lifecycle, registry
from conversations.turns.encoders import NdjsonEncoder, SiteEventEncoder
from conversations.turns.readers import follow_run, readers_attached
from conversations.turns.start import begin_turn, start_run
from conversations.web.chat_requests import chat_payload, chat_turn_starter


async def health(request: HttpRequest) -> HttpResponse:
    """For load balancers and process managers: 503 while this process drains for a shutdown
    (route nothing new to it); "degraded" while Redis is unreachable (new answers are refused
    with a 503, pages and saved conversations still work).

    Cheap on purpose: no database, no query to Redis (the process's watch says how it is).
    A Redis outage keeps the status 200: it touches every process at once, and a balancer
    taking them all out would turn the site's clear 503s into its own errors."""
    draining = lifecycle.is_draining()
    redis = dependencies.redis_status()
    status = "draining" if draining else "degraded" if redis == "unreachable" else "ok"
    body = {
        "status": status,
        "redis": redis,
        "running_turns": registry.count(),
        "readers": readers_attached(),
    }
    return JsonResponse(body, status=503 if draining else 200)


@login_required
def chat(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """Show the user's conversations, one of them open, or a new chat."""
    conversation = None
    chat_messages = []
    if pk is not None:
        conversation = selectors.conversation_get(user=request.user, conversation_id=pk)
        chat_messages = selectors.conversation_thread(conversation=conversation)
    first_page, next_cursor = selectors.conversation_page(
        user=request.user, source=Conversation.Source.WEB, limit=settings.CHAT_SIDEBAR_PAGE_SIZE
    )
    context = {
        # The sidebar's first page, grouped by date; sidebar.js loads the rest from the API.
        "conversation_groups": history.group_by_date(first_page),
        "next_cursor": next_cursor.encode() if next_cursor else "",
        "sidebar_page_size": settings.CHAT_SIDEBAR_PAGE_SIZE,
        "generated_titles": settings.CHAT_GENERATED_TITLES,
        "conversation": conversation,
        "chat_messages": chat_messages,
        "models": providers.model_options(),
        "default_model_key": providers.default_model_key(),
        "stream_url": reverse("conversations:stream"),
        "new_chat_url": reverse("conversations:chat"),
    }
    return render(request, "conversations/chat.html", context)


@json_api_view("POST", authenticate=session_user, render_error=render_json_error)
async def chat_stream(
    request: HttpRequest, user: AbstractBaseUser, *, request_id: str
) -> HttpResponse:
    """Take a message from the chat page, save it, and stream the answer as SSE."""
    payload = parse_chat_payload(request)
    return await stream_chat_turn(request, user, request_id=request_id, surface="chat", **payload)


def site_encoder(request: HttpRequest) -> SiteEventEncoder | NdjsonEncoder:
    """Server-Sent Events, or NDJSON for a client that asks for it in Accept."""
    if "application/x-ndjson" in request.headers.get("Accept", ""):
        return NdjsonEncoder()
    return SiteEventEncoder()


async def stream_chat_turn(
    request: HttpRequest,
    user: AbstractBaseUser,
    *,
    request_id: str,
    surface: str,
    message: str,
    model: str,
    conversation: int | None,
    action: str = "send",
    message_id: int | None = None,
) -> HttpResponse:
    """Answer one chat message as the site's event stream (the chat page, `surface` "chat",
    and the site API, "api"): the turn runs on its own, and this response is its first reader.

    A ChatError (a refused limit included) passes to the caller's json_api_view."""
    start, ask, need = chat_turn_starter(
        user,
        request_id,
        message=message,
        model=model,
        conversation=conversation,
        action=action,
        message_id=message_id,
    )
    turn, admission = await begin_turn(user, start, ask=ask, need=need)
    run = await start_run(turn, admission, surface=surface)
    encoder = site_encoder(request)
    stream = follow_run(run, encoder, keepalive_seconds=settings.SSE_KEEPALIVE_SECONDS)
    return sse_response(
        stream,
        request_id=request_id,
        headers=admission.headers,
        content_type=encoder.content_type,
    )


def parse_chat_payload(request: HttpRequest, *, url_conversation: int | None = None) -> dict:
    """Read a chat message from a JSON body (see chat_requests.chat_payload)."""
    return chat_payload(parse_json_object(request), url_conversation=url_conversation)


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's last resort for an unexpected error: JSON for the APIs, a page elsewhere."""
    return _api_error(request, 500, "The server failed unexpectedly.") or defaults.server_error(
        request
    )


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """A 404 in JSON for the APIs, Django's page elsewhere."""
    return _api_error(request, 404, "Not found.") or defaults.page_not_found(request, exception)


def _api_error(request: HttpRequest, status: int, message: str) -> HttpResponse | None:
    headers = {"X-Request-ID": request_id_for(request)}
    if request.path.startswith("/v1/"):
        kind = "server_error" if status >= 500 else "invalid_request_error"
        return openai_error(status, message, type=kind, headers=headers)
    if request.path.startswith("/api/"):
        return json_error(status, message, headers=headers)
    return None


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Explain a CSRF failure in JSON to scripts and as Django's page to browsers."""
    wants_json = request.content_type == "application/json" or "text/event-stream" in (
        request.headers.get("Accept", "")
    )
    if wants_json:
        return json_error(403, f"CSRF check failed: {reason} Reload the page and try again.")
    return django_csrf_failure(request, reason=reason)


# A new API key travels to the one GET that shows it split in two, neither of which tells
# anything alone: in the session (a database row) the key XORed with a random pad of its
# length, and the pad in a short-lived cookie of the keys page. A redirect that is never
# followed leaves no key readable in the session store, and the pad lapses within minutes.
NEW_API_KEY_SESSION_KEY = "conversations.new_api_key"
NEW_API_KEY_PAD_COOKIE = "new_api_key_pad"
NEW_API_KEY_SECONDS = 120


@never_cache  # the page can hold a key shown once: keep it out of every cache and history
@login_required
@require_http_methods(["GET", "POST"])
def api_keys(request: HttpRequest) -> HttpResponse:
    """List the user's API keys, and create one (POST, then redirect to GET).

    A new key travels to the next GET sealed (see NEW_API_KEY_SESSION_KEY), never in a URL,
    and that GET opens and removes it: reloading neither creates another key nor shows this
    one again.
    """
    path = reverse("conversations:api_keys")
    if request.method == "POST":
        try:
            _, new_key = apikeys.api_key_create(
                user=request.user, name=request.POST.get("name", "")
            )
        except InvalidChatRequest as exc:
            return _api_keys_page(request, error=exc.message, status=400)
        sealed, pad = seal(new_key)
        request.session[NEW_API_KEY_SESSION_KEY] = {"sealed": sealed, "at": time.time()}
        response = redirect(path)
        response.set_cookie(
            NEW_API_KEY_PAD_COOKIE,
            pad,
            max_age=NEW_API_KEY_SECONDS,
            path=path,
            secure=settings.SESSION_COOKIE_SECURE,
            httponly=True,
            samesite="Strict",
        )
        return response
    held = request.session.pop(NEW_API_KEY_SESSION_KEY, None)
    pad = request.COOKIES.get(NEW_API_KEY_PAD_COOKIE)
    new_key = None
    if isinstance(held, dict) and pad and time.time() - held.get("at", 0) < NEW_API_KEY_SECONDS:
        new_key = unseal(held.get("sealed", ""), pad)
    response = _api_keys_page(request, new_key=new_key)
    if pad is not None:
        response.delete_cookie(NEW_API_KEY_PAD_COOKIE, path=path, samesite="Strict")
    return response


def seal(secret: str) -> tuple[str, str]:
    """Split `secret` into two strings, each random alone: (sealed, pad)."""
    raw = secret.encode()
    pad = secrets.token_bytes(len(raw))
    sealed = bytes(a ^ b for a, b in zip(raw, pad, strict=True))
    return base64.urlsafe_b64encode(sealed).decode(), base64.urlsafe_b64encode(pad).decode()


def unseal(sealed: str, pad: str) -> str | None:
    """The secret `seal` split, or None when the parts do not belong together."""
    try:
        left, right = base64.urlsafe_b64decode(sealed), base64.urlsafe_b64decode(pad)
        if len(left) != len(right):
            return None
        return bytes(a ^ b for a, b in zip(left, right, strict=True)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def _api_keys_page(
    request: HttpRequest,
    *,
    new_key: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "api_keys": request.user.api_keys.all(),
        "new_key": new_key,
        "error": error,
        "api_base_url": request.build_absolute_uri("/v1"),
    }
    return render(request, "conversations/api_keys.html", context, status=status)


@login_required
@require_POST
def api_key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Revoke one of the user's keys (the page asks for confirmation first)."""
    if not apikeys.api_key_revoke(user=request.user, key_id=pk):
        raise Http404("No such active API key.")
    return redirect("conversations:api_keys")
