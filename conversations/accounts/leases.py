"""Leases on a user's concurrent-stream slots: each running answer holds one.

A lease is taken when a turn is admitted, renewed by the turn's runner while it runs, and
given back when it ends. A lease that is not renewed expires by itself within
STREAM_LEASE_SECONDS, so a process that dies (SIGKILL, a crash, a deploy that cuts it short)
cannot lock its users out for long. A refusal changes nothing: a client that retries as told
is let in as soon as a lease ends or expires.

With REDIS_URL the leases of a user are one Redis sorted set (member: the lease, score: its
expiry in Redis's own clock), shared by every server process; acquiring is one Lua script,
atomic. On a request's path (`count_and_acquire`, `arenew`, `arelease`) the script also counts
the request against the per-minute limit, so admission is one round trip, made from the event
loop with the asyncio client (no worker thread). Without Redis, an in-process table serves the
one process.
"""

import asyncio
import logging
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.core.cache import cache as django_cache

from conversations.redis_async import redis_client

logger = logging.getLogger(__name__)

# How long a lease lasts without renewal, and how often a running turn renews it.
STREAM_LEASE_SECONDS = 60.0
RENEW_EVERY_SECONDS = 20.0


@dataclass(frozen=True, slots=True)
class Lease:
    """One running answer's slot; `tokens` of the user's daily quota reserved with it."""

    user_id: int
    id: str
    tokens: int = 0

    @property
    def member(self) -> str:
        """The lease as stored: its id, and the tokens it reserves after a colon."""
        return f"{self.id}:{self.tokens}" if self.tokens else self.id


@dataclass(frozen=True, slots=True)
class QuotaAsk:
    """What a request may cost a daily token quota, to reserve with its lease.

    `left` is the quota less what the ledger holds for today; `prompt` the request's prompt,
    estimated; `answer` the answer's limit when the client set one (max_tokens), else None:
    then up to `default_answer` tokens are reserved for it, as many as are left.
    """

    left: int
    prompt: int
    answer: int | None
    default_answer: int

    def reservation(self, reserved: int) -> int:
        """The tokens to reserve beside `reserved` (the user's running answers' tokens), or
        0 when the request does not fit in what is left of the quota."""
        left = self.left - reserved
        if self.answer is not None:
            need = self.prompt + self.answer
            return need if need <= left else 0
        allowance = min(self.default_answer, left - self.prompt)
        return self.prompt + allowance if allowance >= 1 else 0


# Why a lease was not taken (see QuotaAsk and the scripts below).
LEASED, NO_STREAM, NO_TOKENS = 1, 0, 2


def reserved_tokens(members: list[str]) -> int:
    """The tokens reserved by these lease members."""
    return sum(int(member.rpartition(":")[2]) for member in members if ":" in member)


class StreamLeases(ABC):
    """A user's leases, at most `limit` at once."""

    def __init__(self, lease_seconds: float = STREAM_LEASE_SECONDS) -> None:
        self.lease_seconds = lease_seconds

    def acquire(self, user_id: int, limit: int, quota: QuotaAsk | None = None) -> Lease | None:
        """Take a lease if the user holds fewer than `limit` live ones (and, with `quota`,
        the request fits in what is left of it); None otherwise."""
        lease, status = self.acquire_or_say_why(user_id, limit, quota)
        return lease if status == LEASED else None

    @abstractmethod
    def acquire_or_say_why(
        self, user_id: int, limit: int, quota: QuotaAsk | None = None
    ) -> tuple[Lease | None, int]:
        """Take a lease as `acquire` does; return it and LEASED, or None and why not
        (NO_STREAM, NO_TOKENS)."""

    @abstractmethod
    def renew(self, lease: Lease) -> None:
        """Push the lease's expiry back by a full term, if it is still held."""

    @abstractmethod
    def release(self, lease: Lease) -> None:
        """Give the lease back; releasing twice, or after it expired, is harmless."""

    @abstractmethod
    def held(self, user_id: int) -> int:
        """How many live leases the user holds."""

    @abstractmethod
    def reserved(self, user_id: int) -> int:
        """The tokens the user's leases reserve (a lease just expired may still count: never
        fewer than the live ones)."""

    # The same from the event loop. In process, nothing waits, so these call the above.

    async def areserved(self, user_id: int) -> int:
        return self.reserved(user_id)

    async def arenew(self, lease: Lease) -> None:
        self.renew(lease)

    async def arelease(self, lease: Lease) -> None:
        self.release(lease)


# A request counted and, unless refused, leased: one round trip, atomic. KEYS[1] the request
# count of the user's current minute (django-ratelimit's key: conversations.accounts.limits),
# KEYS[2] the user's lease set. ARGV: the count limit (-1: count nothing), the count's lifetime in
# seconds, whether to take a lease (0 when another limit already refused), the lease id, the
# lease limit, the lease's milliseconds; then the daily quota's part (QuotaAsk): what is left
# of it (-1: no quota), the prompt's tokens, the answer's limit (-1: none), the default answer.
# Over the count limit no lease is taken: a refused request holds none. Expired leases go
# first; a refusal writes nothing to the set, which lives as long as its newest lease. The
# tokens reserved are the sum over the live leases (a member "id:tokens" reserves them).
# A request refused for the quota is not counted: it asked no model, and the client's
# other requests this minute should not pay for it.
# Returns the count, LEASED, NO_STREAM or NO_TOKENS, and the tokens this lease reserves.
_COUNT_AND_ACQUIRE = """
local count = 0
local function over_quota()
  if ARGV[1] ~= '-1' then count = redis.call('DECR', KEYS[1]) end
  return {count, 2, 0}
end
if ARGV[1] ~= '-1' then
  count = redis.call('INCR', KEYS[1])
  if count == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
  end
  if count > tonumber(ARGV[1]) then
    return {count, 0, 0}
  end
end
if ARGV[3] == '0' then
  return {count, 0, 0}
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
local tokens = 0
if ARGV[7] ~= '-1' then
  local reserved = 0
  for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    local amount = string.match(member, ':(%d+)$')
    if amount then reserved = reserved + tonumber(amount) end
  end
  local left, prompt = tonumber(ARGV[7]) - reserved, tonumber(ARGV[8])
  if ARGV[9] ~= '-1' then
    tokens = prompt + tonumber(ARGV[9])
    if tokens > left then return over_quota() end
  else
    local allowance = math.min(tonumber(ARGV[10]), left - prompt)
    if allowance < 1 then return over_quota() end
    tokens = prompt + allowance
  end
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  return {count, 0, 0}
end
local member = ARGV[4]
if tokens > 0 then member = member .. ':' .. tokens end
local expiry = now_ms + tonumber(ARGV[6])
redis.call('ZADD', KEYS[2], expiry, member)
redis.call('PEXPIREAT', KEYS[2], expiry)
return {count, 1, tokens}
"""

# KEYS[1] the user's set; ARGV: lease id, lease milliseconds. Only a lease still held.
_RENEW = """
local now = redis.call('TIME')
local expiry = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[2])
if redis.call('ZADD', KEYS[1], 'XX', 'CH', expiry, ARGV[1]) == 1 then
  redis.call('PEXPIREAT', KEYS[1], expiry)
  return 1
end
return 0
"""

# KEYS[1] the user's set: the number of leases not yet expired.
_HELD = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now_ms, '+inf')
"""


class RedisStreamLeases(StreamLeases):
    """Leases in Redis, through the default cache's client (its connection pool)."""

    def __init__(self, client, *, key_prefix: str, lease_seconds: float = STREAM_LEASE_SECONDS):
        super().__init__(lease_seconds)
        self.client = client
        self.key_prefix = key_prefix
        self._acquire_script = client.register_script(_COUNT_AND_ACQUIRE)
        self._renew_script = client.register_script(_RENEW)
        self._held_script = client.register_script(_HELD)

    def key(self, user_id: int) -> str:
        return f"{self.key_prefix}:stream-leases:{user_id}"

    @property
    def _ms(self) -> int:
        return max(1, round(self.lease_seconds * 1000))

    def acquire_or_say_why(
        self, user_id: int, limit: int, quota: QuotaAsk | None = None
    ) -> tuple[Lease | None, int]:
        lease_id = uuid.uuid4().hex
        keys = ["", self.key(user_id)]  # nothing counted: no count key
        args = [-1, 0, 1, lease_id, limit, self._ms, *_quota_args(quota)]
        _, status, tokens = self._acquire_script(keys=keys, args=args)
        return (Lease(user_id, lease_id, int(tokens)) if status == LEASED else None), int(status)

    def renew(self, lease: Lease) -> None:
        self._renew_script(keys=[self.key(lease.user_id)], args=[lease.member, self._ms])

    def release(self, lease: Lease) -> None:
        self.client.zrem(self.key(lease.user_id), lease.member)

    def held(self, user_id: int) -> int:
        return int(self._held_script(keys=[self.key(user_id)]))

    def reserved(self, user_id: int) -> int:
        return reserved_tokens(_decoded(self.client.zrange(self.key(user_id), 0, -1)))

    async def count_and_acquire(
        self,
        user_id: int,
        limit: int,
        *,
        count_key: str,
        count_limit: int,
        count_seconds: int,
        take_lease: bool = True,
        quota: QuotaAsk | None = None,
    ) -> tuple[int, Lease | None, int]:
        """Count a request under `count_key` (unless `count_limit` is -1) and, unless that
        count is over `count_limit` or `take_lease` is false, take a lease as
        `acquire_or_say_why` does: one round trip. Return the count, the lease taken if any,
        and why none was (LEASED when one was)."""
        lease_id = uuid.uuid4().hex
        count, status, tokens = await self._async_script(_COUNT_AND_ACQUIRE)(
            keys=[count_key, self.key(user_id)],
            args=[
                count_limit,
                count_seconds,
                int(take_lease),
                lease_id,
                limit,
                self._ms,
                *_quota_args(quota),
            ],
        )
        lease = Lease(user_id, lease_id, int(tokens)) if status == LEASED else None
        return int(count), lease, int(status)

    async def arenew(self, lease: Lease) -> None:
        await self._async_script(_RENEW)(
            keys=[self.key(lease.user_id)], args=[lease.member, self._ms]
        )

    async def arelease(self, lease: Lease) -> None:
        await redis_client().zrem(self.key(lease.user_id), lease.member)

    async def areserved(self, user_id: int) -> int:
        return reserved_tokens(_decoded(await redis_client().zrange(self.key(user_id), 0, -1)))

    @staticmethod
    def _async_script(source: str):
        # Bound to the running loop's client; sent as EVALSHA, the source only on a miss.
        return redis_client().register_script(source)


def _decoded(members: list) -> list[str]:
    return [m.decode() if isinstance(m, bytes) else m for m in members]


def _quota_args(quota: QuotaAsk | None) -> list[int]:
    if quota is None:
        return [-1, 0, -1, 0]
    answer = -1 if quota.answer is None else quota.answer
    return [quota.left, quota.prompt, answer, quota.default_answer]


class MemoryStreamLeases(StreamLeases):
    """Leases in this process's memory, for the embedded default (one process)."""

    def __init__(self, lease_seconds: float = STREAM_LEASE_SECONDS) -> None:
        super().__init__(lease_seconds)
        self._leases: dict[int, dict[str, float]] = {}
        self._lock = threading.Lock()  # admission runs in worker threads

    def _live(self, user_id: int) -> dict[str, float]:
        """The user's live leases, by member (see Lease.member), with their expiry."""
        now = time.monotonic()
        leases = self._leases.get(user_id, {})
        for lease_id in [i for i, expiry in leases.items() if expiry <= now]:
            del leases[lease_id]
        if not leases:
            self._leases.pop(user_id, None)
        return leases

    def acquire_or_say_why(
        self, user_id: int, limit: int, quota: QuotaAsk | None = None
    ) -> tuple[Lease | None, int]:
        with self._lock:
            leases = self._live(user_id)
            tokens = 0
            if quota is not None:
                tokens = quota.reservation(reserved_tokens(list(leases)))
                if not tokens:
                    return None, NO_TOKENS
            if len(leases) >= limit:
                return None, NO_STREAM
            lease = Lease(user_id, uuid.uuid4().hex, tokens)
            leases[lease.member] = time.monotonic() + self.lease_seconds
            self._leases[user_id] = leases
            return lease, LEASED

    def renew(self, lease: Lease) -> None:
        with self._lock:
            leases = self._live(lease.user_id)
            if lease.member in leases:
                leases[lease.member] = time.monotonic() + self.lease_seconds

    def release(self, lease: Lease) -> None:
        with self._lock:
            self._leases.get(lease.user_id, {}).pop(lease.member, None)
            self._live(lease.user_id)

    def held(self, user_id: int) -> int:
        with self._lock:
            return len(self._live(user_id))

    def reserved(self, user_id: int) -> int:
        with self._lock:
            return reserved_tokens(list(self._live(user_id)))


@cache
def stream_leases() -> StreamLeases:
    """This process's leases: in Redis with REDIS_URL (the default cache is Redis then)."""
    if settings.REDIS_URL:
        client = django_cache._cache.get_client(write=True)  # Django's RedisCache client
        prefix = settings.CACHES["default"].get("KEY_PREFIX") or "chatsite"
        return RedisStreamLeases(client, key_prefix=prefix)
    return MemoryStreamLeases()


_renewing: "asyncio.Task | None" = None


def ensure_renewing(held: Callable[[], list["HeldLease"]]) -> None:
    """Renew every lease `held()` returns every RENEW_EVERY_SECONDS, in one task for the
    whole process (a task per answer was a task's memory for each); the task ends by itself
    when no lease is held, and the next answer starts it again."""
    global _renewing
    loop = asyncio.get_running_loop()
    if _renewing is None or _renewing.done() or _renewing.get_loop() is not loop:
        _renewing = loop.create_task(_renew_while_held(held), name="stream-lease-renewal")


async def _renew_while_held(held: Callable[[], list["HeldLease"]]) -> None:
    while True:
        await asyncio.sleep(RENEW_EVERY_SECONDS)
        leases = held()
        if not leases:
            return
        for lease in leases:
            try:
                await lease.renew()
            except Exception:
                logger.warning("Renewing a stream lease of user %s failed", lease.lease.user_id)


class HeldLease:
    """A lease as a running turn holds it: renew it while running, give it back at the end,
    from the event loop."""

    def __init__(self, leases: StreamLeases, lease: Lease) -> None:
        self._leases, self.lease = leases, lease
        self._held = True

    async def renew(self) -> None:
        if self._held:
            await self._leases.arenew(self.lease)

    async def release(self) -> None:
        """Give the lease back; releasing twice is harmless."""
        if not self._held:
            return
        self._held = False
        await self._leases.arelease(self.lease)

    async def reserved_with_the_others(self) -> int:
        """The tokens this lease and the user's other leases reserve."""
        return await self._leases.areserved(self.lease.user_id)
