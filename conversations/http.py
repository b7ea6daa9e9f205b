"""The site's HTTP shapes: a request's JSON object in, one JSON error body per API surface
(the site's, OpenAI's) out, and the SSE response with its headers."""

import functools
import logging
import re
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError, connections
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from psycopg_pool import PoolTimeout
from redis.exceptions import RedisError

from conversations import dependencies
from conversations.exceptions import (
    ChatError,
    InvalidChatRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    ServerBusy,
    UnexpectedError,
)

logger = logging.getLogger(__name__)

SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")


def parse_json_object(request: HttpRequest) -> dict:
    """Return the JSON object in the request body; RequestDataTooBig passes through."""
    try:
        data = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise InvalidChatRequest("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidChatRequest("The request body must be a JSON object.")
    return data


def request_id_for(request: HttpRequest) -> str:
    """Return the request's X-Request-ID when it is sane, else a new one; the same one for
    the whole request, so that a view and the error handlers after it quote one ID."""
    chosen = getattr(request, "_chatsite_request_id", None)
    if chosen is None:
        given = request.headers.get("X-Request-ID", "")
        chosen = given if SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        request._chatsite_request_id = chosen  # type: ignore[attr-defined]
    return chosen


def json_error(
    status: int,
    message: str,
    *,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    """Answer with the site's one error shape: {"error": {"message": ..., "field": ...}}."""
    error: dict[str, str] = {"message": message}
    if field:
        error["field"] = field
    return JsonResponse({"error": error}, status=status, headers=headers)


def openai_error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    """Answer with OpenAI's error body, the one error shape of /v1:
    {"error": {"message", "type", "param", "code"}}."""
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JsonResponse(body, status=status, headers=headers)


def render_json_error(exc: ChatError, headers: dict[str, str]) -> JsonResponse:
    """Render a ChatError in the site's one error shape (see json_error)."""
    return json_error(exc.status, exc.message, field=exc.field, headers=headers)


def sse_response(
    events: AsyncIterable[bytes],
    *,
    request_id: str,
    headers: dict[str, str] | None = None,
    content_type: str = "text/event-stream; charset=utf-8",
) -> StreamingHttpResponse:
    """Wrap an async iterator of encoded events (SSE, or NDJSON lines) in a streaming
    response.

    It must be async: under ASGI Django reads a sync iterator to the end before sending.
    """
    response = StreamingHttpResponse(events, content_type=content_type, headers=headers)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    response["X-Request-ID"] = request_id
    return response


JsonApiView = Callable[..., Awaitable[HttpResponse]]


# Whether the request's thread may hold a database connection: set where one is opened (in
# the thread, whose context changes asgiref carries back to the request), cleared where they
# are given back. A request whose work gave its connection back already (the prompt save
# does) then takes no extra trip to its thread to release nothing.
_may_hold_connection: ContextVar[bool] = ContextVar("may_hold_connection", default=False)


@receiver(connection_created, dispatch_uid="responses.note_connection")
def _note_connection(sender, connection, **kwargs) -> None:
    _may_hold_connection.set(True)


def close_request_connections() -> None:
    """Give the thread's database connections back (to the pool), unless a test's
    transaction holds them."""
    held = False
    for connection in connections.all(initialized_only=True):
        # Inside an atomic block (a test's transaction) closing would break the block.
        if connection.in_atomic_block:
            held = held or connection.connection is not None
        else:
            connection.close()
    _may_hold_connection.set(held)


async def release_connections() -> None:
    """Give the request's pooled connection back to the pool before its response goes out:
    Django would keep it until the response is closed. Runs in the request's own thread,
    where its ORM calls opened the connection; not at all when none was opened since the
    last release."""
    if _may_hold_connection.get():
        await sync_to_async(close_request_connections)()


BUSY_RETRY_AFTER = 5


def as_chat_error(exc: Exception, where: str, request_id: str) -> ChatError:
    """Turn an exception of an API view (or a socket's message) that is no ChatError into
    the one its client is answered with; `where` names the path, for the log."""
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge("The request body is too large.")
    if isinstance(exc, RedisError):
        # Redis is away (or its pool is exhausted): nothing was written, try again soon.
        logger.warning("Redis failed for %s (request %s): %r", where, request_id, exc)
        return dependencies.redis_unreachable(exc)
    if isinstance(exc, OperationalError | InterfaceError):
        # No connection came free in time (busy), or the database cannot be reached (down,
        # restarting): either way nothing was written, and the client may try again soon.
        busy = isinstance(exc.__cause__, PoolTimeout)
        logger.warning(
            "No database for %s (request %s): %s", where, request_id, exc, exc_info=not busy
        )
        what = "The server is busy" if busy else "The server cannot reach its database right now"
        return ServerBusy(
            f"{what}. Try again in {BUSY_RETRY_AFTER} seconds.",
            headers={"Retry-After": str(BUSY_RETRY_AFTER)},
        )
    # An API client must get JSON, never Django's HTML error page.
    logger.exception("Unexpected error in %s (request %s)", where, request_id)
    return UnexpectedError(
        f"The server failed unexpectedly; quote request ID {request_id} when reporting it."
    )


def json_api_view(
    *methods: str,
    authenticate: Callable[[HttpRequest], Awaitable[AbstractBaseUser]],
    render_error: Callable[[ChatError, dict[str, str]], HttpResponse],
) -> Callable[[JsonApiView], JsonApiView]:
    """Make an async API view: allow only `methods`, authenticate, and render every
    ChatError through `render_error`, so each API surface has one error shape.

    The view is called as `view(request, user, *args, request_id=..., **kwargs)`. It is
    csrf_exempt: `authenticate` does the CSRF check where a session is used.
    """

    def decorate(view: JsonApiView) -> JsonApiView:
        @csrf_exempt
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            request_id = request_id_for(request)
            try:
                if request.method not in methods:
                    raise MethodNotAllowed(
                        f"{request.method} is not allowed here; use {' or '.join(methods)}.",
                        headers={"Allow": ", ".join(methods)},
                    )
                user = await authenticate(request)
                response = await view(request, user, *args, request_id=request_id, **kwargs)
            except ChatError as exc:  # ConversationNotFound too, although it is an Http404
                response = render_error(exc, {"X-Request-ID": request_id} | exc.headers)
            except (Http404, PermissionDenied):
                raise  # Django's handlers answer these (in JSON under /api/ and /v1/)
            except Exception as exc:
                error = as_chat_error(exc, request.path, request_id)
                response = render_error(error, {"X-Request-ID": request_id} | error.headers)
            # Give the pooled connection back before the response goes out: Django keeps it
            # until the response is closed, and logs an error response first, in a thread of
            # the default executor that may be waiting for a connection itself.
            await release_connections()
            return response

        return wrapper

    return decorate
