"""What one chat request produces, and how it is written: streamed in OpenAI's wire format,
as one JSON body, or not at all (hang, drop) when a directive asks for a fault."""

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from devllm.answers import choose_answer, tokenize
from devllm.errors import error_response

CHAT_MODEL = "dev-chat"
REASONER_MODEL = "dev-reasoner"
MODELS = (CHAT_MODEL, REASONER_MODEL)

# Poll interval while hanging: a backstop for runners without handler_cancellation.
HANG_POLL_SECONDS = 0.1


class ClientGone(Exception):
    """Signal that the client closed its connection while we were waiting."""


@dataclass
class Reply:
    """Describe what one chat request will produce before any byte is sent."""

    request: web.Request
    record: dict[str, Any]
    completion_id: str
    created: int
    model: str
    reasoning: list[str]
    content: list[str]
    finish_reason: str
    prompt_tokens: int
    delay: float
    fault: dict[str, Any]
    include_usage: bool
    dropped: bool = False

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        """Build one `chat.completion.chunk` with this reply's id, model and time."""
        chunk: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def usage(self, content_sent: int, reasoning_sent: int) -> dict[str, Any]:
        """Build the usage object for the tokens actually produced."""
        completion = content_sent + reasoning_sent
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }
        if self.model == REASONER_MODEL:
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_sent}
        return usage


def answer_tokens(
    text: str, fault: dict[str, Any], max_tokens: int | None, stop: Any
) -> tuple[list[str], str]:
    """Choose the answer for the prompt and cut it by stop strings and token limits."""
    prompt = text.strip()
    answer = prompt if fault.get("echo") else choose_answer(prompt)
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    cuts = [answer.find(s) for s in stops if isinstance(s, str) and s and s in answer]
    if cuts:
        answer = answer[: min(cuts)]
    tokens = tokenize(answer)
    finish_reason = "stop"
    if isinstance(fault.get("tokens"), int):
        # The directive simulates a cut-off answer, so it always reports "length".
        tokens = tokens[: fault["tokens"]]
        finish_reason = "length"
    if max_tokens is not None and len(tokens) > max_tokens:
        tokens = tokens[:max_tokens]
        finish_reason = "length"
    return tokens, finish_reason


async def hang(request: web.Request) -> None:
    """Wait until the client goes away (cancellation, or a closed transport as a backstop)."""
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ClientGone
        await asyncio.sleep(HANG_POLL_SECONDS)


def drop(reply: Reply) -> None:
    """Abort the TCP connection abruptly, as a crashing upstream would."""
    reply.dropped = True
    transport = reply.request.transport
    if transport is not None:
        transport.abort()


async def stream_reply(reply: Reply, headers: dict[str, str]) -> web.StreamResponse:
    """Stream the reply as server-sent events in OpenAI's exact wire format."""
    request, record, fault = reply.request, reply.record, reply.fault
    if fault.get("hang_before"):
        await hang(request)

    resp = web.StreamResponse(
        status=200,
        headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
    )
    record["status"] = 200
    await resp.prepare(request)

    async def send(payload: dict[str, Any]) -> None:
        await resp.write(b"data: " + orjson.dumps(payload) + b"\n\n")

    await send(reply.chunk({"role": "assistant", "content": ""}))
    if fault.get("hang"):
        await hang(request)
    # A model that thinks before its first token, as hosted models do (make bench uses it).
    await asyncio.sleep(fault.get("first_token_ms", 0) / 1000)

    for token in reply.reasoning:
        await asyncio.sleep(reply.delay)
        # DeepSeek-style: reasoning tokens carry content null.
        await send(reply.chunk({"content": None, "reasoning_content": token}))
        record["reasoning_tokens_sent"] += 1

    # Index len(content) is visited too, so a fault at N >= answer length still fires.
    for index in range(len(reply.content) + 1):
        if fault.get("error_after") == index:
            message = f"The development server failed on purpose after {index} tokens"
            error = {"error": {"message": message, "type": "server_error", "code": "devllm_fault"}}
            await send(error)
            await resp.write_eof()
            return resp
        if fault.get("drop_after") == index:
            # It breaks while making the next token: the tokens sent are read before the
            # reset, which would otherwise race them (a reset discards unread data).
            await asyncio.sleep(reply.delay)
            drop(reply)
            return resp
        if fault.get("malformed_after") == index:
            await resp.write(b"data: {this is not json\n\n")
        if fault.get("hang_after") == index:
            await hang(request)
        if index == len(reply.content):
            break
        await asyncio.sleep(reply.delay)
        await send(reply.chunk({"content": reply.content[index]}))
        record["tokens_sent"] += 1

    record["finish_reason"] = reply.finish_reason
    await send(reply.chunk({}, reply.finish_reason))
    if reply.include_usage:
        usage_chunk = reply.chunk({})
        usage_chunk["choices"] = []
        usage_chunk["usage"] = reply.usage(record["tokens_sent"], record["reasoning_tokens_sent"])
        await send(usage_chunk)
    await resp.write(b"data: [DONE]\n\n")
    record["finished"] = True
    await resp.write_eof()
    return resp


async def whole_reply(reply: Reply, headers: dict[str, str]) -> web.StreamResponse:
    """Answer with one `chat.completion` object; faults map to their non-streaming analogue."""
    request, record, fault = reply.request, reply.record, reply.fault
    if fault.get("hang_before") or fault.get("hang") or "hang_after" in fault:
        await hang(request)
    # One token delay only: non-streaming callers should not wait for the whole pace.
    await asyncio.sleep(reply.delay)
    if "drop_after" in fault:
        drop(reply)
        return web.Response(status=499)
    if "error_after" in fault:
        record["status"] = 500
        message = f"The development server failed on purpose after {fault['error_after']} tokens"
        return error_response(500, message, code="devllm_fault", headers=headers)

    if "malformed_after" in fault:
        resp = web.Response(body=b"{this is not json", content_type="application/json")
    else:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(reply.content)}
        if reply.reasoning:
            message["reasoning_content"] = "".join(reply.reasoning)
        completion = {
            "id": reply.completion_id,
            "object": "chat.completion",
            "created": reply.created,
            "model": reply.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": reply.usage(len(reply.content), len(reply.reasoning)),
        }
        resp = web.Response(body=orjson.dumps(completion), content_type="application/json")
    resp.headers.update(headers)
    record["status"] = 200
    record["finish_reason"] = reply.finish_reason
    # Send it here rather than returning it, so "finished" means the bytes were written.
    await resp.prepare(request)
    await resp.write_eof()
    record["tokens_sent"] = len(reply.content)
    record["reasoning_tokens_sent"] = len(reply.reasoning)
    record["finished"] = "malformed_after" not in fault
    return resp


# -- Application and runner ---------------------------------------------------------------------
