"""API keys: create, revoke and authenticate. Only a SHA-256 of a key is ever stored.

A key is 256 random bits, so a fast hash is enough: there is nothing to brute-force.

A known key costs no query: each process keeps its active keys for PROCESS_CACHE_SECONDS
(conversations.accounts.local_cache), and forgets a user's at once, in every process, when one of
their keys is revoked or deleted, or the user changes or goes (here, and conversations.signals).
"""

import asyncio
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from conversations.accounts.local_cache import ProcessCache, forget_user
from conversations.executors import in_post_stream_thread
from conversations.models import ApiKey
from conversations.validation import clean_text

logger = logging.getLogger(__name__)

KEY_PREFIX = "cs-"
SHOWN_PREFIX_LENGTH = 10
# Recording every use would write to the database on every API call; once a minute is enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(*, user: AbstractBaseUser, name: str) -> tuple[ApiKey, str]:
    """Create a key for the user; return it with the raw key, which is never stored.

    Raises InvalidChatRequest for a name that is too long or cannot be stored."""
    name = clean_text(
        name.strip() or "API key",
        field="name",
        max_length=ApiKey._meta.get_field("name").max_length,
        label="The key name",
    )
    raw_key = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=raw_key[:SHOWN_PREFIX_LENGTH],
        key_hash=hash_key(raw_key),
    )
    return api_key, raw_key


@dataclass
class ActiveKey:
    """An active key and its active owner, as read from the database (and kept in this
    process for PROCESS_CACHE_SECONDS: conversations.accounts.local_cache)."""

    user: AbstractBaseUser
    key_id: int
    last_used_at: datetime | None


# By the key's hash. Every change that revokes a key or its owner's access forgets the owner.
_active_keys = ProcessCache("api-keys")
_touching: set[asyncio.Task] = set()


def api_key_revoke(*, user: AbstractBaseUser, key_id: int) -> bool:
    """Revoke one of the user's own keys; return False when they have no such active key."""
    revoked = ApiKey.objects.filter(user=user, pk=key_id, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if revoked:
        forget_user(user.pk)
    return bool(revoked)


def api_keys_revoke(*, keys: QuerySet[ApiKey]) -> int:
    """Revoke the active keys among `keys` (staff, in the admin); return how many."""
    active = keys.filter(revoked_at__isnull=True)
    with transaction.atomic():
        owners = set(active.values_list("user_id", flat=True))
        revoked = active.update(revoked_at=timezone.now())
        for user_id in owners:
            forget_user(user_id)
    return revoked


def active_key(key_hash: str) -> ActiveKey | None:
    """Return the active key with this hash and its active owner, or None; record the use."""
    api_key = (
        ApiKey.objects.select_related("user")
        .filter(key_hash=key_hash, revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if api_key is None:
        return None
    found = ActiveKey(user=api_key.user, key_id=api_key.pk, last_used_at=api_key.last_used_at)
    now = timezone.now()
    if _use_due(found, now):
        found.last_used_at = now
        api_key_touch(key_id=found.key_id, used_at=now)
    return found


async def aactive_key(raw_key: str) -> ActiveKey | None:
    """Return the active key and its owner, from this process's copy when it has one (no
    query, no thread hop); else from the database, keeping a copy. Unknown keys are not
    kept: each costs a query, as before."""
    key_hash = hash_key(raw_key)
    found = _active_keys.get(key_hash)
    if found is None:
        found = await sync_to_async(active_key)(key_hash)
        if found is not None:
            _active_keys.put(key_hash, found, user_id=found.user.pk)
        return found
    now = timezone.now()
    if _use_due(found, now):
        # Claimed now, on the event loop, so that the hits meanwhile do not write it too.
        found.last_used_at = now
        _touch_in_background(found.key_id, now)
    return found


def api_key_touch(*, key_id: int, used_at: datetime) -> None:
    """Record when the key was last used."""
    ApiKey.objects.filter(pk=key_id).update(last_used_at=used_at)


def _use_due(found: ActiveKey, now: datetime) -> bool:
    return found.last_used_at is None or now - found.last_used_at > LAST_USED_RESOLUTION


def _touch_in_background(key_id: int, used_at: datetime) -> None:
    # The request need not wait for a bookkeeping write; the set keeps the task alive.
    task = asyncio.create_task(in_post_stream_thread(api_key_touch, key_id=key_id, used_at=used_at))
    _touching.add(task)
    task.add_done_callback(_touched)


def _touched(task: asyncio.Task) -> None:
    _touching.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.warning("Could not record an API key's use", exc_info=task.exception())
