"""The OpenAI-compatible API: any OpenAI SDK works with base_url="<site>/v1" and a user's key.

    GET  /v1/models
    POST /v1/chat/completions   (stream or not)

Each call goes through the same admission, save and post-stream hooks as the web chat, and
is saved as a conversation whose source is "api". Errors use OpenAI's shape, so the SDKs
raise their own exception types (AuthenticationError, RateLimitError, ...).
"""

import time
from collections.abc import AsyncIterator

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse, JsonResponse

from conversations import providers, services
from conversations.auth import NotAuthenticated, api_key_user
from conversations.encoders import CompletionCollector, OpenAIChunkEncoder, openai_usage
from conversations.exceptions import ChatError, UnknownModel
from conversations.openai_schema import parse_chat_completion
from conversations.ratelimit import RateLimited
from conversations.responses import json_api_view, sse_response
from conversations.streaming import stream_turn, turn_events
from conversations.views import begin_turn, parse_json_object


def openai_error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    """Answer with OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JsonResponse(body, status=status, headers=headers)


def error_for(exc: ChatError, headers: dict[str, str]) -> JsonResponse:
    """Translate one of chatsite's errors into OpenAI's status, type and code."""
    if isinstance(exc, NotAuthenticated):
        return openai_error(401, exc.message, code="invalid_api_key", headers=headers)
    if isinstance(exc, RateLimited):
        return openai_error(
            429, exc.message, type="requests", code="rate_limit_exceeded", headers=headers
        )
    if isinstance(exc, UnknownModel):
        return openai_error(
            404, exc.message, param="model", code="model_not_found", headers=headers
        )
    return openai_error(exc.status, exc.message, param=exc.field, headers=headers)


def v1_view(method: str):
    """API key only, and OpenAI's error shape."""
    return json_api_view(method, authenticate=api_key_user, render_error=error_for)


@v1_view("GET")
async def models(request: HttpRequest, user: AbstractBaseUser, *, request_id: str) -> HttpResponse:
    data = [
        {"id": model.key, "object": "model", "created": 0, "owned_by": model.endpoint}
        for model in providers.model_options()
    ]
    return JsonResponse({"object": "list", "data": data}, headers={"X-Request-ID": request_id})


@v1_view("POST")
async def chat_completions(
    request: HttpRequest, user: AbstractBaseUser, *, request_id: str
) -> HttpResponse:
    completion = parse_chat_completion(
        parse_json_object(request), max_chars=settings.CHAT_MAX_MESSAGE_CHARS
    )
    providers.get_model(completion.model)  # an unknown model costs no rate-limit request
    turn, admission = await begin_turn(
        request,
        user,
        lambda: services.prompt_turn_start(
            user=user,
            model_key=completion.model,
            messages=completion.messages,
            request_id=request_id,
        ),
    )
    completion_id, created = f"chatcmpl-{request_id}", int(time.time())
    pipeline = {
        "client": providers.client_for(turn.model.endpoint),
        "keepalive_seconds": settings.SSE_KEEPALIVE_SECONDS,
        "params": completion.params,
        "release": admission.slot.release,
    }
    headers = admission.headers | {"X-Request-ID": request_id}
    if completion.stream:
        encoder = OpenAIChunkEncoder(
            completion_id=completion_id,
            model=completion.model,
            created=created,
            include_usage=completion.include_usage,
        )
        events = turn_events(turn, encoder=encoder, **pipeline)
        return sse_response(events, request_id=request_id, headers=headers)
    collector = CompletionCollector()
    return await collect_completion(
        stream_turn(turn, encoder=collector, **pipeline),
        collector,
        completion_id=completion_id,
        created=created,
        model=completion.model,
        headers=headers,
    )


async def collect_completion(
    events: AsyncIterator[bytes],
    collector: CompletionCollector,
    *,
    completion_id: str,
    created: int,
    model: str,
    headers: dict[str, str],
) -> HttpResponse:
    """Run a turn to its end and answer with one `chat.completion` object."""
    async for _ in events:
        pass
    if collector.accumulator is None:
        return openai_error(
            502,
            collector.error_message,
            type="upstream_error",
            code="upstream_error",
            headers=headers,
        )
    answer = collector.accumulator
    message = {"role": "assistant", "content": "".join(answer.content)}
    if answer.reasoning:
        message["reasoning_content"] = "".join(answer.reasoning)
    body = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": answer.finish_reason or "stop",
            }
        ],
        "usage": openai_usage(answer),
    }
    return JsonResponse(body, headers=headers)
