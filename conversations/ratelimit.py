"""Per-user limits on asking the models, shared by the web chat, the site API and /v1.

Three rules, checked in this order for every request that calls a model:

1. **Requests per minute**, counted by django-ratelimit in the default cache. With REDIS_URL
   set, that cache is Redis, so the count holds across every server process.
2. **A daily token quota** (optional), checked against the user's ledger for the day
   (DailyUsage), which every saved answer is charged to, whatever became of it; deleting
   conversations gives nothing back. The check comes before a stream and the charge after it,
   so a quota is overrun by at most the answers already running when it is reached.
3. **Concurrent streams**: each running answer holds a lease (conversations.stream_leases),
   taken before the model is called, renewed while it runs, and given back when it ends,
   however it ends. A dead process's leases expire within a minute by themselves, and a
   refusal extends nothing.

The defaults are settings; staff override them per user with UserLimits in the admin.
Every chat response, allowed or refused, carries the headers OpenAI sends:
x-ratelimit-limit-requests, -remaining-requests and -reset-requests (and the -tokens trio
when a quota applies), and the IETF draft's RateLimit-Policy and RateLimit; a refusal adds
Retry-After.
"""

import datetime
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from django.utils import timezone
from django_ratelimit.core import get_usage

from conversations.exceptions import ChatError
from conversations.models import DailyUsage, UserLimits
from conversations.stream_leases import HeldLease, stream_leases


@dataclass(frozen=True, slots=True)
class Limits:
    requests_per_minute: int
    max_concurrent_streams: int
    daily_token_quota: int  # 0: no quota


class RateLimited(ChatError):
    status = 429

    def __init__(
        self, message: str, *, retry_after: int, headers: dict[str, str], kind: str = "requests"
    ) -> None:
        self.retry_after = max(1, retry_after)
        self.kind = kind  # what ran out, "requests" or "tokens", as OpenAI's error type says
        super().__init__(message, headers={**headers, "Retry-After": str(self.retry_after)})


@dataclass
class Admission:
    """A request let through: the headers to send, and the stream lease to give back."""

    headers: dict[str, str]
    lease: HeldLease
    limits: Limits = field(repr=False)


def limits_for(user: AbstractBaseUser) -> Limits:
    """Return the user's limits: staff overrides where set, the settings elsewhere."""
    override = UserLimits.objects.filter(user=user).first()

    def pick(name: str, default: int) -> int:
        value = getattr(override, name, None)
        return default if value is None else value

    return Limits(
        requests_per_minute=pick("requests_per_minute", settings.RATE_LIMIT_PER_MINUTE),
        max_concurrent_streams=pick("max_concurrent_streams", settings.MAX_CONCURRENT_STREAMS),
        daily_token_quota=pick("daily_token_quota", settings.DAILY_TOKEN_QUOTA),
    )


def tokens_used_today(user: AbstractBaseUser) -> int:
    """Return the tokens charged to the user's ledger today (see DailyUsage)."""
    used = DailyUsage.objects.filter(user=user, day=timezone.localdate()).values_list(
        "tokens", flat=True
    )
    return used.first() or 0


def seconds_until_midnight() -> int:
    now = timezone.localtime()
    tomorrow = (now + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((tomorrow - now).total_seconds()) + 1


def _count_request(user_id: int, limits: Limits) -> dict:
    usage = get_usage(
        # django-ratelimit wants a request; the count is keyed by the user alone, so that
        # every surface (HTTP, WebSocket) shares it.
        HttpRequest(),
        group="chat",
        key=lambda group, request: str(user_id),
        rate=f"{limits.requests_per_minute}/m",
        increment=True,
    )
    # get_usage answers None only when RATELIMIT_ENABLE is off: then nothing is limited.
    return usage or {"count": 0, "should_limit": False, "time_left": 60}


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _take_lease(user_id: int, limit: int, headers: dict[str, str]) -> HeldLease:
    leases = stream_leases()
    lease = leases.acquire(user_id, limit)
    if lease is None:
        raise RateLimited(
            f"You already have {_plural(limit, 'answer')} streaming; "
            "wait for one to finish or stop it.",
            retry_after=1,
            headers=headers,
        )
    return HeldLease(leases, lease)


def _admit(user: AbstractBaseUser) -> Admission:
    limits = limits_for(user)
    usage = _count_request(user.pk, limits)
    reset = max(0, usage["time_left"])
    remaining = max(0, limits.requests_per_minute - usage["count"])
    headers = request_limit_headers(limits.requests_per_minute, remaining, reset)
    if usage["should_limit"]:
        raise RateLimited(
            f"You have reached your limit of {_plural(limits.requests_per_minute, 'request')} "
            "a minute. "
            f"Try again in {max(1, reset)} seconds.",
            retry_after=reset,
            headers=headers,
        )
    if limits.daily_token_quota:
        used, wait = tokens_used_today(user), seconds_until_midnight()
        quota = limits.daily_token_quota
        headers |= token_quota_headers(quota, max(0, quota - used), wait)
        if used >= quota:
            raise RateLimited(
                f"You have used your daily quota of {quota} tokens. "
                f"It renews in {wait // 3600} h {wait % 3600 // 60} min.",
                retry_after=wait,
                headers=headers,
                kind="tokens",
            )
    lease = _take_lease(user.pk, limits.max_concurrent_streams, headers)
    return Admission(headers=headers, lease=lease, limits=limits)


def request_limit_headers(limit: int, remaining: int, reset: int) -> dict[str, str]:
    """The per-minute limit in the headers OpenAI sends (which SDKs and gateways read) and
    in the IETF draft's RateLimit-Policy and RateLimit fields."""
    return {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": str(remaining),
        "x-ratelimit-reset-requests": openai_duration(reset),
        "RateLimit-Policy": f'"requests";q={limit};w=60',
        "RateLimit": f'"requests";r={remaining};t={reset}',
    }


def token_quota_headers(quota: int, remaining: int, reset: int) -> dict[str, str]:
    """The daily token quota in OpenAI's -tokens headers."""
    return {
        "x-ratelimit-limit-tokens": str(quota),
        "x-ratelimit-remaining-tokens": str(remaining),
        "x-ratelimit-reset-tokens": openai_duration(reset),
    }


def openai_duration(seconds: int) -> str:
    """Write a wait as OpenAI's reset headers do: "7s", "6m0s", "2h5m0s"."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


async def admit_chat_request(user: AbstractBaseUser) -> Admission:
    """Count a request of the user's against their limits; raise RateLimited when one is
    reached.

    One trip to a worker thread: the checks read the database and the cache.
    """
    return await sync_to_async(_admit)(user)
