"""OpenAI-shaped error responses of the development LLM server."""

import orjson
from aiohttp import web

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_response(
    status: int,
    message: str,
    *,
    type_: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """Build a JSON error response in OpenAI's `{"error": {...}}` shape."""
    if type_ is None:
        type_ = ERROR_TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers=headers,
    )
