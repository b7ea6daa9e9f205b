"""The chat pages and the endpoint that streams an answer."""

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.http import require_POST

from conversations import providers, selectors, services
from conversations.exceptions import ChatError, InvalidChatRequest
from conversations.responses import json_error, request_id_for, sse_response
from conversations.streaming import stream_turn


@login_required
def chat(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """Show the user's conversations, one of them open, or a new chat."""
    conversation = None
    chat_messages = []
    if pk is not None:
        conversation = selectors.conversation_get(user=request.user, conversation_id=pk)
        chat_messages = selectors.conversation_messages(conversation=conversation)
    context = {
        "conversations": selectors.conversation_list(user=request.user),
        "conversation": conversation,
        "chat_messages": chat_messages,
        "models": providers.model_options(),
        "default_model_key": providers.default_model_key(),
        "stream_url": reverse("conversations:stream"),
        "new_chat_url": reverse("conversations:chat"),
    }
    return render(request, "conversations/chat.html", context)


@require_POST
async def chat_stream(request: HttpRequest) -> HttpResponse:
    """Take a message, save it, and stream the model's answer as Server-Sent Events."""
    request_id = request_id_for(request)
    headers = {"X-Request-ID": request_id}
    user = await request.auser()
    if not user.is_authenticated:
        return json_error(401, "Log in to chat.", headers=headers)
    try:
        payload = parse_chat_payload(request)
        turn = await sync_to_async(services.turn_start)(
            user=user,
            conversation_id=payload["conversation"],
            model_key=payload["model"],
            content=payload["message"],
            request_id=request_id,
        )
    except RequestDataTooBig:
        return json_error(413, "The request is too large.", headers=headers)
    except ChatError as exc:
        return json_error(exc.status, exc.message, field=exc.field, headers=headers)
    # A streaming request must not hold a pooled database connection for the whole stream.
    await sync_to_async(connections.close_all)()
    events = stream_turn(
        turn,
        client=providers.client_for(turn.model.endpoint),
        keepalive_seconds=settings.SSE_KEEPALIVE_SECONDS,
    )
    return sse_response(events, request_id=request_id)


def parse_chat_payload(request: HttpRequest) -> dict:
    """Read {"message", "model", "conversation"} from a JSON body, refusing malformed input."""
    try:
        data = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise InvalidChatRequest("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidChatRequest("The request body must be a JSON object.")
    conversation = data.get("conversation")
    if conversation is not None and (type(conversation) is not int or conversation < 1):
        raise InvalidChatRequest("conversation must be a conversation ID.", field="conversation")
    model = data.get("model") or providers.default_model_key()
    if not isinstance(model, str):
        raise InvalidChatRequest("model must be a model key.", field="model")
    return {"message": data.get("message"), "model": model, "conversation": conversation}


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Explain a CSRF failure in JSON to scripts and as Django's page to browsers."""
    wants_json = request.content_type == "application/json" or "text/event-stream" in (
        request.headers.get("Accept", "")
    )
    if wants_json:
        return json_error(403, f"CSRF check failed: {reason} Reload the page and try again.")
    return django_csrf_failure(request, reason=reason)
