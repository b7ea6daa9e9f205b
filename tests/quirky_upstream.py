"""Serve an OpenAI-compatible upstream that misbehaves in chosen, deterministic ways.

Run it as its own process (`python -m tests.quirky_upstream --port N`) and point a chatsite
endpoint at it over real HTTP. The `model` of a chat request picks the quirk (see QUIRKS);
every request body is kept in memory and listed at GET /_quirks/requests, oldest first.
Like devllm, this imports nothing from Django.
"""

import argparse
import asyncio
import itertools
import signal
from collections import deque
from typing import Any

import orjson
from aiohttp import web

ANSWER = "Quirky answers still arrive whole."
ANSWER_TOKENS = ["Quirky", " answers", " still", " arrive", " whole."]
PROMPT_TOKENS = 7
# Each id is a quirk model: the model of a chat request picks how it is answered.
QUIRKS = (
    "multiline-data", "crlf", "cr", "html", "json-completion", "reject-stream-options",
    "odd-finish", "bad-request", "plain-400", "empty", "cut", "error-event", "slow-ok",
    "status-503"
)  # fmt: skip
HTML_PAGE = (
    "<!doctype html><html><head><title>Captive Portal Login</title></head>"
    "<body><h1>Please log in</h1></body></html>"
)
CREATED = 1_700_000_000  # a fixed timestamp keeps every answer byte-for-byte repeatable
RECORD_LIMIT = 500
PACE = 0.005  # seconds between events, so they really leave as separate writes
SLOW_PACE = 0.05

RECORDS_KEY = web.AppKey("quirk_records", deque)
COMPLETION_IDS = itertools.count(1)  # one process per test server, so module state is enough


def _json(obj: Any) -> str:
    """Serialise JSON for aiohttp's json_response with orjson."""
    return orjson.dumps(obj).decode()


def error_json(
    status: int, message: str, type_: str = "invalid_request_error", **kw: Any
) -> web.Response:
    """Build an OpenAI-shaped error response; kw may set param and code."""
    error = {"message": message, "type": type_, "param": None, "code": None, **kw}
    return web.json_response({"error": error}, status=status, dumps=_json)


def sse_event(data: str, eol: str = "\n", *, multiline: bool = False) -> bytes:
    """Frame data as one SSE event; multiline splits it over several data: lines."""
    lines = data.split("\n") if multiline else [data]
    return ("".join(f"data: {line}{eol}" for line in lines) + eol).encode()


def envelope(completion_id: str, model: str, kind: str, **fields: Any) -> dict:
    """Return a completion object of this kind: id, object, created and model, then fields."""
    return {"id": completion_id, "object": kind, "created": CREATED, "model": model, **fields}


def chunk(completion_id: str, model: str, delta: dict, finish: str | None = None) -> dict:
    """Return a chat.completion.chunk with one choice carrying delta."""
    choices = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return envelope(completion_id, model, "chat.completion.chunk", choices=choices)


def answer_chunks(
    completion_id: str, model: str, tokens: list[str], finish: str | None, usage: bool
) -> list[dict]:
    """Return the role chunk, one chunk per token, then the finish and usage chunks if asked."""
    chunks = [chunk(completion_id, model, {"role": "assistant", "content": ""})]
    chunks += [chunk(completion_id, model, {"content": token}) for token in tokens]
    if finish is not None:
        chunks.append(chunk(completion_id, model, {}, finish))
    if usage:
        counts = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": len(tokens)}
        counts["total_tokens"] = PROMPT_TOKENS + len(tokens)
        chunks.append({**chunk(completion_id, model, {}), "choices": [], "usage": counts})
    return chunks


async def stream_events(
    request: web.Request, events: list[bytes], pace: float = PACE
) -> web.StreamResponse:
    """Send each event in its own write, pausing between them, then end the body cleanly."""
    resp = web.StreamResponse(headers={"Cache-Control": "no-cache"})
    resp.content_type = "text/event-stream"
    await resp.prepare(request)
    for event in events:
        await resp.write(event)
        await asyncio.sleep(pace)
    await resp.write_eof()
    return resp


async def quirk_reply(request: web.Request, model: str, body: dict) -> web.StreamResponse:
    """Answer in the way the quirk model asks for."""
    completion_id = f"chatcmpl-quirk-{next(COMPLETION_IDS)}"
    options = body.get("stream_options")
    usage = isinstance(options, dict) and options.get("include_usage") is True

    def normal(finish: str = "stop", eol: str = "\n", *, multiline: bool = False) -> list[bytes]:
        chunks = answer_chunks(completion_id, model, ANSWER_TOKENS, finish, usage)
        # Pretty-printing gives several lines per event; joined with "\n" they are the JSON again.
        option = orjson.OPT_INDENT_2 if multiline else 0
        dumped = [orjson.dumps(c, option=option).decode() for c in chunks]
        events = [sse_event(d, eol, multiline=multiline) for d in dumped]
        return [*events, sse_event("[DONE]", eol)]

    match model:
        case "multiline-data":
            return await stream_events(request, normal(multiline=True))
        case "crlf":
            return await stream_events(request, normal(eol="\r\n"))
        case "cr":
            return await stream_events(request, normal(eol="\r"))
        case "odd-finish":
            return await stream_events(request, normal(finish="end_turn"))
        case "slow-ok":
            return await stream_events(request, normal(), pace=SLOW_PACE)
        case "reject-stream-options":
            if "stream_options" in body:
                return error_json(400, "Unrecognized request argument supplied: stream_options")
            # Without stream_options there is no include_usage, so no usage chunk either.
            return await stream_events(request, normal())
        case "cut":
            chunks = answer_chunks(completion_id, model, ANSWER_TOKENS[:3], None, False)
            return await stream_events(request, [sse_event(_json(c)) for c in chunks])
        case "empty":
            return await stream_events(request, [sse_event("[DONE]")])
        case "error-event":
            error = {"error": {"message": "upstream overloaded, try later", "type": "server_error"}}
            return await stream_events(request, [sse_event(_json(error))])
        case "html":
            return web.Response(text=HTML_PAGE, content_type="text/html")
        case "json-completion":
            message = {"role": "assistant", "content": ANSWER}
            counts = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 5, "total_tokens": 12}
            choices = [{"index": 0, "message": message, "finish_reason": "stop"}]
            completion = envelope(completion_id, model, "chat.completion", choices=choices)
            return web.json_response({**completion, "usage": counts}, dumps=_json)
        case "bad-request":
            message = (
                "This model's maximum context length is 8192 tokens. "
                "However, your messages resulted in 9000 tokens."
            )
            return error_json(400, message, param="messages", code="context_length_exceeded")
        case "plain-400":
            return web.Response(status=400, text="prompt too long for this model")
        case "status-503":
            message = "The engine is currently overloaded, please try again later"
            resp = error_json(503, message, "server_error")
            resp.headers["Retry-After"] = "3"
            return resp
    message = f"The model `{model}` does not exist."
    return error_json(404, message, param="model", code="model_not_found")


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Record the request, then answer as its quirk model dictates."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return error_json(400, "We could not parse the JSON body of your request.")
    if not isinstance(body, dict):
        return error_json(400, "The request body must be a JSON object.")
    model = body.get("model")
    request_id = request.headers.get("X-Request-ID")
    peer = request.transport.get_extra_info("peername") if request.transport else None
    record = {"model": model, "request_id": request_id, "body": body}
    request.app[RECORDS_KEY].append(record | {"client_address": peer and f"{peer[0]}:{peer[1]}"})
    try:
        return await quirk_reply(request, model if isinstance(model, str) else "", body)
    except ConnectionError:
        # The client left mid-stream; nothing more to send.
        return web.Response(status=499)


async def list_models(request: web.Request) -> web.Response:
    """List the quirk models in OpenAI's list shape."""
    data = [{"id": m, "object": "model", "created": CREATED, "owned_by": "quirky"} for m in QUIRKS]
    return web.json_response({"object": "list", "data": data}, dumps=_json)


async def list_requests(request: web.Request) -> web.Response:
    """List the recorded chat requests, oldest first."""
    return web.json_response({"data": list(request.app[RECORDS_KEY])}, dumps=_json)


def make_app() -> web.Application:
    """Create the aiohttp application with empty request records."""
    # 32 MiB so tests can send large bodies (e.g. images) without aiohttp's 1 MiB 413.
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[RECORDS_KEY] = deque(maxlen=RECORD_LIMIT)
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/_quirks/requests", list_requests)
    return app


async def serve(host: str, port: int) -> None:
    """Bind, announce the base URL, and serve until SIGINT or SIGTERM."""
    # A short shutdown_timeout so a signal ends even a slow stream promptly.
    runner = web.AppRunner(make_app(), handler_cancellation=True, shutdown_timeout=0.25)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound = runner.addresses[0][1] if runner.addresses else port
        shown = f"[{host}]" if ":" in host else host
        # Flush so a parent process waiting on this line sees it at once.
        print(f"quirky_upstream: serving on http://{shown}:{bound}/v1", flush=True)
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.quirky_upstream", description="Serve a misbehaving OpenAI API."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="TCP port (0 picks one)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
