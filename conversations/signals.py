"""Drop the rows each process keeps (conversations.accounts.local_cache) when the user they
belong to changes: a key saved or deleted (revoking goes through
conversations.accounts.apikeys, which forgets too), a user saved (made inactive, say) or
deleted, staff's limit overrides for a user created, changed or removed, a user logging out.
The same notice makes each process check the user's open chat sockets
(conversations.web.consumers).

Bulk QuerySet.update() sends no signal: code that changes these rows that way must call
local_cache.forget_user itself, as conversations.accounts.apikeys does.
"""

from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from conversations.accounts.local_cache import forget_user
from conversations.models import ApiKey, UserLimits

# Logging in saves last_login alone, and nothing kept depends on it.
_LOGIN_ONLY = frozenset({"last_login"})


@receiver(post_save, sender=ApiKey, dispatch_uid="local_cache.api_key_saved")
def forget_on_key_saved(sender, instance: ApiKey, created: bool, **kwargs) -> None:
    if not created:
        forget_user(instance.user_id)


@receiver(post_delete, sender=ApiKey, dispatch_uid="local_cache.api_key_deleted")
def forget_on_key_deleted(sender, instance: ApiKey, **kwargs) -> None:
    forget_user(instance.user_id)


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="local_cache.user_saved")
def forget_on_user_saved(sender, instance, created: bool, update_fields=None, **kwargs) -> None:
    if not created and update_fields != _LOGIN_ONLY:
        forget_user(instance.pk)


@receiver(post_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="local_cache.user_deleted")
def forget_on_user_deleted(sender, instance, **kwargs) -> None:
    forget_user(instance.pk)


# Created too: the process may keep "no override" for the user.
@receiver(post_save, sender=UserLimits, dispatch_uid="local_cache.limits_saved")
@receiver(post_delete, sender=UserLimits, dispatch_uid="local_cache.limits_deleted")
def forget_on_limits_changed(sender, instance: UserLimits, **kwargs) -> None:
    forget_user(instance.user_id)


# A socket opened with the session must not outlive it (its check follows the session's end).
@receiver(user_logged_out, dispatch_uid="local_cache.user_logged_out")
def forget_on_logout(sender, request, user, **kwargs) -> None:
    if user is not None:
        forget_user(user.pk)
