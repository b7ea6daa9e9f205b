"""Who is calling: an API key (Authorization: Bearer) or the browser's session."""

import copy

from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware

from conversations.accounts.apikeys import aactive_key
from conversations.exceptions import ChatError


class NotAuthenticated(ChatError):
    status = 401


class CsrfFailed(ChatError):
    status = 403


def bearer_token(request: HttpRequest) -> str | None:
    """Return the Bearer token, "" for a malformed Authorization header, None without one."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def api_key_user(request: HttpRequest) -> AbstractBaseUser:
    """Return the owner of the request's API key, or raise NotAuthenticated."""
    token = bearer_token(request)
    if token is None:
        # OpenAI's wording: SDKs and gateways classify errors by it.
        raise NotAuthenticated(
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). "
            "Create one on the API keys page."
        )
    if not token:
        raise NotAuthenticated("Malformed Authorization header: expected 'Bearer <key>'.")
    found = await aactive_key(token)
    if found is None:
        raise NotAuthenticated(
            "Incorrect API key provided: it is unknown or has been revoked. "
            "Create one on the API keys page."
        )
    # The process keeps one user object per key for every request that uses it: each request
    # gets its own, so that nothing one request caches on it (a relation, say) leaks to others.
    return copy.copy(found.user)


async def api_key_or_session_user(request: HttpRequest) -> AbstractBaseUser:
    """Authenticate by API key when one is sent, else by session with Django's CSRF check.

    Views using this are csrf_exempt: a key-authenticated call has no cookie to protect,
    and a session-authenticated one is checked here instead.
    """
    if request.headers.get("Authorization") is not None:
        return await api_key_user(request)
    return await session_user(
        request, not_logged_in="Log in, or send an API key as 'Authorization: Bearer <key>'."
    )


async def session_user(
    request: HttpRequest, *, not_logged_in: str = "Log in to chat."
) -> AbstractBaseUser:
    """Return the session's user after Django's CSRF check, for csrf_exempt views."""
    user = await request.auser()
    if not user.is_authenticated:
        raise NotAuthenticated(not_logged_in)
    rejection = CsrfViewMiddleware(_never_called).process_view(request, None, (), {})
    if rejection is not None:
        raise CsrfFailed("CSRF check failed. Reload the page and try again.")
    return user


def _never_called(request: HttpRequest) -> HttpResponse:
    raise AssertionError("only process_view is used")
