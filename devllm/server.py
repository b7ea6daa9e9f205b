"""Serve an OpenAI-compatible chat completions API with deterministic answers.

This module deliberately imports nothing from Django so the server can run on
its own (`python -m devllm`) as well as through `manage.py devllm`. Every chat
request is recorded in memory under its request ID so tests can check what the
server saw and whether the client went away before the end.
"""

import asyncio
import hmac
import signal
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from devllm.answers import (
    choose_reasoning,
    content_text,
    count_prompt_tokens,
    tokenize,
)
from devllm.directives import DirectiveError, parse_directives
from devllm.errors import error_response
from devllm.replies import (
    MODELS,
    REASONER_MODEL,
    ClientGone,
    Reply,
    answer_tokens,
    stream_reply,
    whole_reply,
)

RECORD_LIMIT = 1000
LIST_LIMIT = 200
# aiohttp refuses bodies over 1 MiB by default, but chatsite accepts 2.5 MB prompts and the
# SDK may escape their text on the way (a non-ASCII character can become six bytes).
MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Hold the server-wide options chosen on the command line."""

    delay_ms: float
    api_key: str | None
    started: int


SETTINGS_KEY = web.AppKey("devllm_settings", Settings)
RECORDS_KEY = web.AppKey("devllm_records", OrderedDict)


# -- Error bodies -------------------------------------------------------------------------------


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    """Reject /v1 requests whose bearer token does not match the configured API key."""
    api_key = request.app[SETTINGS_KEY].api_key
    if api_key is not None and request.path.startswith("/v1/"):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            return error_response(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                code="invalid_api_key",
            )
        # compare_digest so the dev key is not trivially guessable by timing.
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), api_key):
            return error_response(401, "Incorrect API key provided.", code="invalid_api_key")
    return await handler(request)


# -- Models -------------------------------------------------------------------------------------


async def list_models(request: web.Request) -> web.Response:
    """List the two development models in OpenAI's list shape."""
    created = request.app[SETTINGS_KEY].started
    data = [
        {"id": model, "object": "model", "created": created, "owned_by": "devllm"}
        for model in MODELS
    ]
    return web.json_response({"object": "list", "data": data}, dumps=_dumps)


def _dumps(obj: Any) -> str:
    """Serialise JSON for aiohttp's json_response with orjson."""
    return orjson.dumps(obj).decode()


# -- Request records ----------------------------------------------------------------------------


def _store_record(app: web.Application, record: dict[str, Any]) -> None:
    """Keep the record under its request ID, evicting the oldest beyond RECORD_LIMIT."""
    records = app[RECORDS_KEY]
    previous = records.pop(record["request_id"], None)
    # A client's retries reuse its request ID (the openai SDK's do): count every request.
    record["attempts"] = (previous or {}).get("attempts", 0) + 1
    records[record["request_id"]] = record
    while len(records) > RECORD_LIMIT:
        records.popitem(last=False)


async def get_record(request: web.Request) -> web.Response:
    """Return the record of one chat request, or a 404 error body."""
    record = request.app[RECORDS_KEY].get(request.match_info["request_id"])
    if record is None:
        return error_response(404, "No request with this ID was recorded.", code="not_found")
    return web.json_response(record, dumps=_dumps)


async def list_records(request: web.Request) -> web.Response:
    """Return the most recent records, oldest first."""
    records = list(request.app[RECORDS_KEY].values())[-LIST_LIMIT:]
    return web.json_response({"object": "list", "data": records}, dumps=_dumps)


# -- Chat completions ---------------------------------------------------------------------------


def _bad_request(message: str, param: str | None = None) -> web.Response:
    """Build a 400 invalid_request_error response."""
    return error_response(400, message, param=param)


def _positive_int(value: Any) -> bool:
    """Tell whether value is a JSON integer >= 1 (bools are not integers here)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _client_address(request: web.Request) -> str | None:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return f"{peer[0]}:{peer[1]}" if peer else None


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    """Return the text of the last user message, or "" if there is none."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Answer one chat completion request, streaming or not, honouring directives."""
    settings = request.app[SETTINGS_KEY]
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _bad_request("We could not parse the JSON body of your request.")
    if not isinstance(body, dict):
        return _bad_request("The request body must be a JSON object.")

    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _bad_request("'messages' must be a non-empty array.", "messages")
    if not all(isinstance(m, dict) for m in messages):
        return _bad_request("Every message must be an object.", "messages")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _bad_request("You must provide a model parameter.", "model")
    if model not in MODELS:
        return error_response(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            type_="invalid_request_error",
            param="model",
            code="model_not_found",
        )
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and not _positive_int(max_tokens):
        return _bad_request("'max_tokens' must be an integer >= 1.", "max_tokens")
    try:
        text, fault = parse_directives(_last_user_text(messages))
    except DirectiveError as exc:
        return _bad_request(str(exc), "messages")

    stream = bool(body.get("stream"))
    options = body.get("stream_options")
    include_usage = stream and isinstance(options, dict) and bool(options.get("include_usage"))
    request_id = request.headers.get("X-Request-ID") or f"req_{uuid.uuid4().hex}"
    record: dict[str, Any] = {
        "request_id": request_id,
        "model": model,
        "stream": stream,
        "tokens_sent": 0,
        "reasoning_tokens_sent": 0,
        "finished": False,
        "client_disconnected": False,
        "status": None,
        "finish_reason": None,
        "fault": fault,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": body.get("temperature"),
        "received_at": time.time(),
        # Which connection it came on ("host:port" of the client): tests see reuse by it.
        "client_address": _client_address(request),
    }
    _store_record(request.app, record)
    headers = {"X-Request-ID": request_id}

    status = fault.get("status")
    if isinstance(status, int) and status >= 400:
        record["status"] = status
        if isinstance(fault.get("retry_after"), int):
            headers["Retry-After"] = str(fault["retry_after"])
        return error_response(
            status,
            f"The development server answered {status} on purpose.",
            code="devllm_fault",
            headers=headers,
        )

    content, finish_reason = answer_tokens(text, fault, max_tokens, body.get("stop"))
    reply = Reply(
        request=request,
        record=record,
        completion_id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=model,
        reasoning=tokenize(choose_reasoning(text.strip())) if model == REASONER_MODEL else [],
        content=content,
        finish_reason=finish_reason,
        prompt_tokens=count_prompt_tokens(messages),
        delay=float(fault.get("delay_ms", settings.delay_ms)) / 1000,
        fault=fault,
        include_usage=include_usage,
    )
    try:
        if stream:
            return await stream_reply(reply, headers)
        return await whole_reply(reply, headers)
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the client closes the socket
        # (handler_cancellation=True); a drop we caused ourselves is not the client's doing.
        if not reply.dropped:
            record["client_disconnected"] = True
        raise
    except (ConnectionError, ClientGone):
        # Writing to a closed socket raises ConnectionResetError (or aiohttp's subclass).
        if not reply.dropped:
            record["client_disconnected"] = True
        return web.Response(status=499)


def make_app(*, delay_ms: float = 30, api_key: str | None = None) -> web.Application:
    """Create the aiohttp application; serve it with handler_cancellation=True."""
    app = web.Application(middlewares=[auth_middleware], client_max_size=MAX_BODY_BYTES)
    app[SETTINGS_KEY] = Settings(delay_ms=delay_ms, api_key=api_key, started=int(time.time()))
    app[RECORDS_KEY] = OrderedDict()
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/_devllm/requests", list_records)
    app.router.add_get("/_devllm/requests/{request_id}", get_record)
    return app


def base_url(host: str, port: int) -> str:
    """Return the OpenAI base URL for a bound host and port."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def _print_line(line: str) -> None:
    """Print the start-up line and flush, so a parent process sees it at once."""
    print(line, flush=True)


async def serve(
    host: str = "127.0.0.1",
    port: int = 8001,
    *,
    delay_ms: float = 30,
    api_key: str | None = None,
    announce: Callable[[str], None] = _print_line,
) -> None:
    """Bind, announce the base URL, and serve until SIGINT or SIGTERM."""
    app = make_app(delay_ms=delay_ms, api_key=api_key)
    # handler_cancellation lets a closed client cancel a hanging or pacing handler at once;
    # a short shutdown_timeout makes Ctrl-C cut in-flight and hanging streams at once
    # (aiohttp waits for it twice) instead of delaying shutdown for a minute.
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.25)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1] if runner.addresses else port
        announce(f"devllm: OpenAI-compatible server on {base_url(host, bound_port)}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def run(host: str = "127.0.0.1", port: int = 8001, **kw: Any) -> None:
    """Run the server in a fresh event loop until SIGINT or SIGTERM."""
    asyncio.run(serve(host, port, **kw))
