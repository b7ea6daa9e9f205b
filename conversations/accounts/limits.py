"""Per-user limits on asking the models, shared by the web chat, the site API and /v1.

Three rules, checked in this order for every request that calls a model:

1. **Requests per minute**, counted in django-ratelimit's windows and keys in the default
   cache. With REDIS_URL set, that cache is Redis, so the count holds across every server
   process; the count and the stream lease (3.) are then one script, one round trip.
2. **A daily token quota** (optional), checked against the user's ledger for the day
   (DailyUsage), which every saved answer is charged to, whatever became of it; deleting
   conversations gives nothing back. The check comes before a stream and the charge after it,
   so a quota is overrun by at most the answers already running when it is reached.
3. **Concurrent streams**: each running answer holds a lease (conversations.accounts.leases),
   taken before the model is called, renewed while it runs, and given back when it ends,
   however it ends. A dead process's leases expire within a minute by themselves, and a
   refusal extends nothing.

The defaults are settings; staff override them per user with UserLimits in the admin.
Every chat response, allowed or refused, carries the headers OpenAI sends:
x-ratelimit-limit-requests, -remaining-requests and -reset-requests (and the -tokens trio
when a quota applies), and the IETF draft's RateLimit-Policy and RateLimit (a "requests"
item, and a "tokens" one when a quota applies); a refusal adds Retry-After, in whole seconds
rounded up, so that a client that waits as told gets in. A request refused for the quota is
not counted against the minute.
"""

import asyncio
import contextlib
import datetime
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import caches
from django.http import HttpRequest
from django.utils import timezone
from django_ratelimit import ALL
from django_ratelimit.core import EXPIRATION_FUDGE, _get_window, _make_cache_key, get_usage

from conversations import selectors
from conversations.accounts.leases import (
    LEASED,
    NO_STREAM,
    NO_TOKENS,
    HeldLease,
    QuotaAsk,
    RedisStreamLeases,
    stream_leases,
)
from conversations.accounts.local_cache import ProcessCache
from conversations.exceptions import ChatError
from conversations.models import DailyUsage, UserLimits
from conversations.providers.client import PrefetchedStream
from conversations.redis_async import redis_client


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
    """A request let through: the headers to send, and the stream lease to give back; and,
    when turn_starts.begin_turn asked the model while saving the prompt, the model's stream,
    which the turn's runner reads."""

    headers: dict[str, str]
    lease: HeldLease
    limits: Limits = field(repr=False)
    prefetched: PrefetchedStream | None = field(default=None, repr=False)
    # Its place among the turns the process runs (running_turns.Claim), until the turn runs.
    place: Any = field(default=None, repr=False)


# Staff's overrides, as (requests per minute, concurrent streams, daily quota), None where the
# setting applies: kept in each process (PROCESS_CACHE_SECONDS) and forgotten everywhere when
# staff change them (conversations.signals). The settings are read at each request.
OVERRIDE_FIELDS = ("requests_per_minute", "max_concurrent_streams", "daily_token_quota")
_overrides = ProcessCache("limit overrides")


def limits_for(user: AbstractBaseUser) -> Limits:
    """Return the user's limits: staff overrides where set, the settings elsewhere."""
    return _resolve(_override_of(user))


async def alimits_for(user: AbstractBaseUser) -> Limits:
    """limits_for from the event loop: from this process's copy of the overrides when it has
    one (no query, no thread), else read in a thread and kept."""
    override = _overrides.get(user.pk)
    if override is None:
        override = await sync_to_async(_override_of)(user)
        _overrides.put(user.pk, override, user_id=user.pk)
    return _resolve(override)


def _override_of(user: AbstractBaseUser) -> tuple[int | None, ...]:
    row = UserLimits.objects.filter(user=user).values_list(*OVERRIDE_FIELDS).first()
    return row or (None, None, None)


def _resolve(override: tuple[int | None, ...]) -> Limits:
    defaults = (
        settings.RATE_LIMIT_PER_MINUTE,
        settings.MAX_CONCURRENT_STREAMS,
        settings.DAILY_TOKEN_QUOTA,
    )
    return Limits(*(d if o is None else o for o, d in zip(override, defaults, strict=True)))


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


# django-ratelimit's group for the per-minute count of requests that call a model.
COUNT_GROUP = "chat"
COUNT_PERIOD_SECONDS = 60
# A count whose limit is switched off (RATELIMIT_ENABLE = False).
NOT_COUNTED = {"count": 0, "should_limit": False, "time_left": COUNT_PERIOD_SECONDS}


def _count_request(user_id: int, limits: Limits) -> dict:
    return _count_in_cache(COUNT_GROUP, user_id, limits.requests_per_minute)


def seconds_until_next_window(window: int) -> int:
    """Whole seconds a client must wait to be in the window after `window`, the end of a
    django-ratelimit window (as its _get_window gives it). A window still counts during its
    last second, while int(time()) == window: a client that waited only `window - now`
    seconds was refused again (an audit: told 52 s, waited 52 s, told 1 s). Rounded up, so
    that a client that waits as told gets in."""
    return window + 1 - int(time.time())


def _count_in_cache(group: str, user_id: int, per_minute: int) -> dict:
    """Count one more in the user's minute of `group`, through django-ratelimit's cache;
    its `time_left` made the wait that gets a client into the next window."""
    usage = get_usage(
        # django-ratelimit wants a request; the count is keyed by the user alone, so that
        # every surface (HTTP, WebSocket) shares it.
        HttpRequest(),
        group=group,
        key=lambda group, request: str(user_id),
        rate=f"{per_minute}/m",
        increment=True,
    )
    # get_usage answers None only when RATELIMIT_ENABLE is off: then nothing is limited.
    if usage is None:
        return NOT_COUNTED
    # django-ratelimit's time_left is `window - int(time())`: one short (seconds_until_next_window).
    return {**usage, "time_left": usage["time_left"] + 1}


def _over_per_minute(what: str, per_minute: int, wait: int) -> RateLimited:
    """The refusal of a count per minute that is over: searches, attaches."""
    wait = max(1, wait)
    return RateLimited(
        f"You have {what} {per_minute} times this minute, the most allowed. "
        f"Try again in {_plural(wait, 'second')}.",
        retry_after=wait,
        headers=request_limit_headers(per_minute, 0, wait),
    )


SEARCH_GROUP = "search"
# Per event loop: the searches running (SEARCH_WORKERS at most), and each user's line.
_search_slots: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = (
    weakref.WeakKeyDictionary()
)
_search_lines: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, list]]" = (
    weakref.WeakKeyDictionary()
)


@contextlib.asynccontextmanager
async def searching(user_id: int) -> AsyncIterator[None]:
    """Hold one of this process's SEARCH_WORKERS places for a search, after the user's own
    earlier searches: a search reads through all of a user's messages, and twenty of one
    user's at once slowed every other page of the server (an audit: a one-row list took
    7.3 s instead of 0.11). The user's extra searches wait for their own, holding nothing."""
    loop = asyncio.get_running_loop()
    slots = _search_slots.get(loop)
    if slots is None:
        slots = _search_slots[loop] = asyncio.Semaphore(settings.SEARCH_WORKERS)
    lines = _search_lines.setdefault(loop, {})
    line = lines.setdefault(user_id, [asyncio.Lock(), 0])  # the user's lock, and who holds or waits
    line[1] += 1
    try:
        async with line[0], slots:
            yield
    finally:
        line[1] -= 1
        if not line[1]:
            del lines[user_id]


def check_search_rate(user_id: int) -> None:
    """Count a search of the user's against SEARCH_RATE_PER_MINUTE; raise RateLimited when
    it is over (a search reads through every message of theirs: one user's burst of them
    would slow everyone's database). Blocking: it counts in the cache."""
    rate = settings.SEARCH_RATE_PER_MINUTE
    usage = _count_in_cache(SEARCH_GROUP, user_id, rate)
    if usage["should_limit"]:
        raise _over_per_minute("searched", rate, usage["time_left"])


def _count_key(user_id: int, limits: Limits) -> tuple[str, int]:
    """The cache key under which django-ratelimit counts the user's requests this minute (so
    that get_usage reads the counts the admission script makes), and the window's end."""
    return _window_key(COUNT_GROUP, user_id, limits.requests_per_minute)


def _window_key(group: str, user_id: int, per_minute: int) -> tuple[str, int]:
    key, window = _cache_key(group, user_id, per_minute)
    return _ratelimit_cache().make_key(key), window


def _cache_key(group: str, user_id: int, per_minute: int) -> tuple[str, int]:
    """django-ratelimit's key for the user's current window of `group`, and the window."""
    value = str(user_id)
    window = _get_window(value, COUNT_PERIOD_SECONDS)
    return _make_cache_key(group, window, f"{per_minute}/m", value, ALL), window


def _ratelimit_cache():
    return caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]


def _counting() -> bool:
    """Whether requests are counted per minute (django-ratelimit's RATELIMIT_ENABLE)."""
    return getattr(settings, "RATELIMIT_ENABLE", True)


def _uncount_request(user_id: int, limits: Limits, usage: dict) -> dict:
    """Take back the count of a request refused for the quota (as the Redis script does)."""
    key, _ = _cache_key(COUNT_GROUP, user_id, limits.requests_per_minute)
    with contextlib.suppress(ValueError):  # the window just ended: nothing to take back
        _ratelimit_cache().decr(key)
    return {**usage, "count": usage["count"] - 1}


ATTACH_GROUP = "attach"
# One count in the user's window: one round trip. KEYS[1] the count; ARGV[1] its lifetime.
_COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return count
"""


async def count_attach(user_id: int) -> None:
    """Count a reader re-attaching to an answer (the site API's events, a socket's attach)
    against READER_ATTACHES_PER_MINUTE; raise RateLimited past it.

    Each attach replays the answer so far: one user attaching and leaving in a loop took a
    server process's CPU, and every other user's requests waited seconds behind it. A page
    re-attaches after a reload or a dropped connection, a few times a minute. From the event
    loop: one Redis round trip, or the in-process cache."""
    rate = settings.READER_ATTACHES_PER_MINUTE
    if settings.REDIS_URL:
        key, window = _window_key(ATTACH_GROUP, user_id, rate)
        script = redis_client().register_script(_COUNT)
        count = int(await script(keys=[key], args=[COUNT_PERIOD_SECONDS + EXPIRATION_FUDGE]))
        over, wait = count > rate, seconds_until_next_window(window)
    else:
        usage = _count_in_cache(ATTACH_GROUP, user_id, rate)
        over, wait = usage["should_limit"], usage["time_left"]
    if over:
        raise _over_per_minute("followed answers", rate, wait)


async def _count_and_lease(
    user_id: int, limits: Limits, quota: QuotaAsk | None
) -> tuple[dict, HeldLease | None, int]:
    """Count the request and take a stream lease unless a limit refuses: with Redis one
    script, one round trip, from the event loop; in process, django-ratelimit's count in the
    local cache and the local lease table, neither of which waits on anything. Return the
    count, the lease, and why there is none (stream_leases.LEASED when there is one)."""
    leases = stream_leases()
    counting = _counting()
    if isinstance(leases, RedisStreamLeases):
        key, window = _count_key(user_id, limits)
        count, lease, why = await leases.count_and_acquire(
            user_id,
            limits.max_concurrent_streams,
            count_key=key,
            count_limit=limits.requests_per_minute if counting else -1,
            count_seconds=COUNT_PERIOD_SECONDS + EXPIRATION_FUDGE,
            quota=quota,
        )
        usage = NOT_COUNTED
        if counting:
            usage = {
                "count": count,
                "should_limit": count > limits.requests_per_minute,
                "time_left": seconds_until_next_window(window),
            }
    else:
        usage = _count_request(user_id, limits)
        lease, why = None, NO_STREAM
        if not usage["should_limit"]:
            lease, why = leases.acquire_or_say_why(user_id, limits.max_concurrent_streams, quota)
            if why == NO_TOKENS and counting:
                usage = _uncount_request(user_id, limits, usage)
    return usage, None if lease is None else HeldLease(leases, lease), why


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _admission(
    limits: Limits,
    usage: dict,
    tokens_used: int | None,
    quota: QuotaAsk | None,
    lease: HeldLease | None,
    why: int,
) -> Admission:
    """The request let through, or RateLimited for the first limit it is over: requests per
    minute, then the daily token quota, then concurrent streams."""
    reset = max(0, usage["time_left"])
    remaining = max(0, limits.requests_per_minute - usage["count"])
    headers = request_limit_headers(limits.requests_per_minute, remaining, reset)
    if usage["should_limit"]:
        raise RateLimited(
            f"You have reached your limit of {_plural(limits.requests_per_minute, 'request')} "
            "a minute. "
            f"Try again in {_plural(max(1, reset), 'second')}.",
            retry_after=reset,
            headers=headers,
        )
    if tokens_used is not None and quota is not None:
        total, wait = limits.daily_token_quota, seconds_until_midnight()
        headers = with_token_quota(headers, total, max(0, quota.left), wait)
        if why == NO_TOKENS:
            raise _quota_refusal(total, quota, wait, headers)
    if lease is None:
        limit = limits.max_concurrent_streams
        raise RateLimited(
            f"You already have {_plural(limit, 'answer')} streaming; "
            "wait for one to finish or stop it.",
            retry_after=1,
            headers=headers,
        )
    return Admission(headers=headers, lease=lease, limits=limits)


# How long a client refused because its running answers hold the rest of its quota waits.
RESERVED_RETRY_AFTER = 5


def _quota_refusal(total: int, quota: QuotaAsk, wait: int, headers: dict) -> RateLimited:
    """Why a request does not fit in the daily quota: used up, too large for what is left,
    or what is left is reserved by answers still running (those end soon)."""
    renews = f"It renews in {wait // 3600} h {wait % 3600 // 60} min."
    if quota.left <= 0:
        message = f"You have used your daily quota of {total} tokens. {renews}"
    elif quota.prompt + (quota.answer or 1) > quota.left:
        answer = "" if quota.answer is None else f" and an answer of up to {quota.answer}"
        message = (
            f"This request needs about {quota.prompt + (quota.answer or 0)} tokens (its "
            f"prompt{answer}), more than the {quota.left} left of your daily quota of "
            f"{total} tokens. {renews}"
        )
    else:
        message = (
            "Your answers still running have reserved the rest of your daily quota of "
            f"{total} tokens. Try again when they end."
        )
        wait = RESERVED_RETRY_AFTER
    return RateLimited(message, retry_after=wait, headers=headers, kind="tokens")


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


# The daily quota's window in the IETF fields, in seconds. It ends at the server's midnight,
# so `t` (the seconds until then) says when it renews; w is the day it spans.
DAY_SECONDS = 86400


def with_token_quota(
    headers: dict[str, str], quota: int, remaining: int, reset: int
) -> dict[str, str]:
    """`headers` (request_limit_headers) with the daily token quota added: OpenAI's -tokens
    headers, and a "tokens" item in each of the IETF draft's fields after "requests"."""
    return headers | {
        "x-ratelimit-limit-tokens": str(quota),
        "x-ratelimit-remaining-tokens": str(remaining),
        "x-ratelimit-reset-tokens": openai_duration(reset),
        "RateLimit-Policy": f'{headers["RateLimit-Policy"]}, "tokens";q={quota};w={DAY_SECONDS}',
        "RateLimit": f'{headers["RateLimit"]}, "tokens";r={remaining};t={reset}',
    }


def openai_duration(seconds: int) -> str:
    """Write a wait as OpenAI's reset headers do: "7s", "6m0s", "2h5m0s"."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


@dataclass(frozen=True, slots=True)
class TokenNeed:
    """What a request may cost the daily token quota, reserved before its answer starts:
    its prompt's tokens, estimated (token_estimate), and the answer's limit when the client
    set one (max_tokens); `context_of` names the conversation whose earlier turns the prompt
    carries too (counted only where a quota applies: it takes a query)."""

    prompt: int = 0
    answer: int | None = None
    context_of: int | None = None


async def admit_chat_request(user: AbstractBaseUser, need: TokenNeed | None = None) -> Admission:
    """Count a request of the user's against their limits and take a stream lease; raise
    RateLimited, holding no lease, when a limit is reached.

    Where a daily token quota applies, the lease also reserves what the request may cost
    (`need`: its prompt, and its answer's limit or DAILY_TOKEN_QUOTA_ANSWER_TOKENS), beside
    what the user's running answers reserved; a request that does not fit is refused before
    anything is written. The answer is charged what it really used when it is saved, and its
    reservation goes with its lease.

    From the event loop, with one Redis round trip (the count and the lease in one script);
    the database only where a daily quota applies, or for overrides this process has no
    copy of.
    """
    need = need or TokenNeed()
    limits = await alimits_for(user)
    used, quota = None, None
    if limits.daily_token_quota:
        used, context = await sync_to_async(_used_and_context)(user, need.context_of)
        quota = QuotaAsk(
            left=limits.daily_token_quota - used,
            prompt=need.prompt + context,
            answer=need.answer,
            default_answer=settings.DAILY_TOKEN_QUOTA_ANSWER_TOKENS,
        )
    usage, lease, why = await _count_and_lease(user.pk, limits, quota)
    if quota is not None and lease is not None:
        usage, lease, why, used, quota = await _confirm_reservation(
            user, limits, usage, lease, used, quota
        )
    return _admission(limits, usage, used, quota, lease, why)


async def _confirm_reservation(
    user: AbstractBaseUser,
    limits: Limits,
    usage: dict,
    lease: HeldLease,
    used: int,
    quota: QuotaAsk,
) -> tuple[dict, HeldLease | None, int, int, QuotaAsk]:
    """Check the reservation against the ledger read again, now that the lease is held.

    An answer that ended between the first read of the ledger and the lease was charged
    after that read and gave its reservation back before the lease: it was counted in
    neither, and answers fitting "exactly" could overrun the quota together (seen under
    load). Read after the lease, every answer is in the ledger or among the reservations
    (or in both, which only errs on the safe side). Refused, the request is uncounted and
    its lease given back, as a refusal in the admission script would be."""
    used_now = await sync_to_async(tokens_used_today)(user)
    if used_now == used:
        return usage, lease, LEASED, used, quota
    quota = replace(quota, left=limits.daily_token_quota - used_now)
    reserved = await lease.reserved_with_the_others()
    if used_now + reserved <= limits.daily_token_quota:
        return usage, lease, LEASED, used_now, quota
    await lease.release()
    if _counting():
        usage = await sync_to_async(_uncount_request)(user.pk, limits, usage)
    return usage, None, NO_TOKENS, used_now, quota


def _used_and_context(user: AbstractBaseUser, conversation_id: int | None) -> tuple[int, int]:
    context = 0
    if conversation_id is not None:
        context = selectors.conversation_context_tokens(user=user, conversation_id=conversation_id)
    return tokens_used_today(user), context
