"""API keys: create, revoke and authenticate. Only a SHA-256 of a key is ever stored.

A key is 256 random bits, so a fast hash is enough: there is nothing to brute-force.
"""

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from conversations.models import ApiKey
from conversations.validation import clean_text

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


def api_key_revoke(*, user: AbstractBaseUser, key_id: int) -> bool:
    """Revoke one of the user's own keys; return False when they have no such active key."""
    revoked = ApiKey.objects.filter(user=user, pk=key_id, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    return bool(revoked)


def user_for_key(raw_key: str) -> AbstractBaseUser | None:
    """Return the active user owning this active key, or None."""
    api_key = (
        ApiKey.objects.select_related("user")
        .filter(key_hash=hash_key(raw_key), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if api_key is None:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return api_key.user
