"""The site's response shapes: one JSON error body, and the SSE response with its headers."""

import re
import uuid
from collections.abc import AsyncIterator

from django.http import HttpRequest, JsonResponse, StreamingHttpResponse

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")


def request_id_for(request: HttpRequest) -> str:
    """Return the request's X-Request-ID when it is sane, else a new one."""
    given = request.headers.get("X-Request-ID", "")
    if _SANE_REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


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


def sse_response(
    events: AsyncIterator[bytes], *, request_id: str, headers: dict[str, str] | None = None
) -> StreamingHttpResponse:
    """Wrap an async iterator of encoded events in a streaming response.

    It must be async: under ASGI Django reads a sync iterator to the end before sending.
    """
    response = StreamingHttpResponse(
        events, content_type="text/event-stream; charset=utf-8", headers=headers
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    response["X-Request-ID"] = request_id
    return response
