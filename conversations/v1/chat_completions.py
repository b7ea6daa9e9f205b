"""The OpenAI-compatible API: any OpenAI SDK works with base_url="<site>/v1" and a user's key.

    GET  /v1/models
    GET  /v1/models/<id>
    POST /v1/chat/completions   (stream or not)
    anything else under /v1/    OpenAI's JSON 404 (or 405)

Each call goes through the same admission, save and post-stream hooks as the web chat, and is
saved in an API conversation: a client that sends the growing history of one chat continues
one conversation (see conversations.threads). Errors use OpenAI's shape and wording, so the
SDKs raise their own exception types (AuthenticationError, RateLimitError, ...), and a model
that fails before its first token is answered with the status that says why.
"""

import dataclasses
import time

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from conversations import providers, services
from conversations.accounts.auth import NotAuthenticated, api_key_user
from conversations.accounts.limits import RateLimited
from conversations.exceptions import ChatError, ProviderError, UnknownModel
from conversations.http import (
    json_api_view,
    openai_error,
    parse_json_object,
    request_id_for,
    sse_response,
)
from conversations.turns.encoders import OpenAIChunkEncoder, openai_failure_body
from conversations.turns.readers import TurnStream, follow_run
from conversations.turns.runner import TurnRun
from conversations.turns.start import ModelAsk, begin_turn, start_run
from conversations.v1.schema import parse_chat_completion


def error_for(exc: ChatError, headers: dict[str, str]) -> JsonResponse:
    """Translate one of chatsite's errors into OpenAI's status, type and code."""
    if isinstance(exc, NotAuthenticated):
        return openai_error(401, exc.message, code="invalid_api_key", headers=headers)
    if isinstance(exc, RateLimited):
        return openai_error(
            429, exc.message, type=exc.kind, code="rate_limit_exceeded", headers=headers
        )
    if isinstance(exc, UnknownModel):
        return openai_error(
            404, exc.message, param="model", code="model_not_found", headers=headers
        )
    if exc.status >= 500:
        return openai_error(exc.status, exc.message, type="server_error", headers=headers)
    return openai_error(exc.status, exc.message, param=exc.field, headers=headers)


def upstream_error(failure: ProviderError, headers: dict[str, str]) -> JsonResponse:
    """Answer a model's failure before its first token with the status that says why."""
    if failure.retry_after:
        headers = headers | {"Retry-After": str(failure.retry_after)}
    return JsonResponse(
        {"error": openai_failure_body(failure)}, status=failure.status, headers=headers
    )


def v1_view(*methods: str):
    """API key only, and OpenAI's error shape."""
    return json_api_view(*methods, authenticate=api_key_user, render_error=error_for)


def model_json(model: providers.ModelOption) -> dict[str, object]:
    return {"id": model.key, "object": "model", "created": 0, "owned_by": model.endpoint}


@v1_view("GET")
async def models(request: HttpRequest, user: AbstractBaseUser, *, request_id: str) -> HttpResponse:
    data = [model_json(model) for model in providers.model_options()]
    return JsonResponse({"object": "list", "data": data}, headers={"X-Request-ID": request_id})


@v1_view("GET")
async def model(
    request: HttpRequest, user: AbstractBaseUser, model_id: str, *, request_id: str
) -> HttpResponse:
    found = providers.get_model(model_id)
    return JsonResponse(model_json(found), headers={"X-Request-ID": request_id})


@v1_view("POST")
async def chat_completions(
    request: HttpRequest, user: AbstractBaseUser, *, request_id: str
) -> HttpResponse:
    completion = parse_chat_completion(
        parse_json_object(request),
        max_chars=settings.CHAT_MAX_MESSAGE_CHARS,
        max_messages=settings.CHAT_MAX_PROMPT_MESSAGES,
    )
    # An unknown model costs no rate-limit request; an alias (a bare upstream id) is answered
    # and saved under the model's own id.
    completion = dataclasses.replace(completion, model=providers.get_model(completion.model).key)
    turn, admission = await begin_turn(
        user,
        lambda: services.prompt_turn_start(
            user=user,
            model_key=completion.model,
            messages=completion.messages,
            request_id=request_id,
        ),
        # The whole history is in the request: the model is asked while it is saved.
        ask=ModelAsk(completion.model, completion.messages, request_id, completion.params),
    )
    run = await start_run(turn, admission, surface="v1", params=completion.params)
    headers = admission.headers | {"X-Request-ID": request_id}
    completion_id, created = f"chatcmpl-{request_id}", int(time.time())
    encoder = OpenAIChunkEncoder(
        completion_id=completion_id,
        model=completion.model,
        created=created,
        include_usage=completion.include_usage,
    )
    # This response reads the turn from now on: a client that leaves while we wait is a
    # reader leaving, and the /v1 disconnect policy applies (by default, cancel).
    stream = follow_run(run, encoder, keepalive_seconds=settings.SSE_KEEPALIVE_SECONDS)
    if not completion.stream:
        return await complete(run, stream, completion_id, created, completion.model, headers)
    return await stream_once_answered(run, stream, request_id=request_id, headers=headers)


async def stream_once_answered(
    run: TurnRun, stream: TurnStream, *, request_id: str, headers: dict[str, str]
) -> HttpResponse:
    """Stream the turn's events once the model has answered: the status line goes out with
    the first byte, so it waits for the model's first chunk (or its failure, answered with
    the status that says why; see upstream_error)."""
    try:
        await run.wait_answered(settings.SSE_KEEPALIVE_SECONDS)
    except BaseException:
        stream.close()
        raise
    if (failure := run.failure_before_answer()) is not None:
        stream.close()
        return upstream_error(failure, headers)
    return sse_response(stream, request_id=request_id, headers=headers)


async def complete(
    run: TurnRun,
    stream: TurnStream,
    completion_id: str,
    created: int,
    model: str,
    headers: dict[str, str],
) -> HttpResponse:
    """Wait for the turn to end and answer with one `chat.completion` object."""
    await stream.drain()
    if run.failure is not None:
        return upstream_error(run.failure, headers)
    answer = run.finished
    assert answer is not None  # the stream drained: the turn has ended
    message = {"role": "assistant", "content": answer.content}
    if answer.reasoning:
        message["reasoning_content"] = answer.reasoning
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
        "usage": answer.usage.as_chat_completion(),
    }
    return JsonResponse(body, headers=headers | answer.usage.headers())


@csrf_exempt
async def unknown_url(request: HttpRequest, path: str = "") -> HttpResponse:
    """Answer any other /v1 URL as OpenAI does, in JSON: never Django's HTML page."""
    headers = {"X-Request-ID": request_id_for(request)}
    return openai_error(404, f"Invalid URL ({request.method} {request.path})", headers=headers)
