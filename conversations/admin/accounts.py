"""Staff tools for user accounts: unlock a login locked by too many failed passwords.

Django's own user admin, with one action added. Imported by conversations.admin.review, which Django
loads after django.contrib.auth's admin has registered the user model.
"""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from conversations.accounts.logins import unlock_account

User = get_user_model()


@admin.action(description="Unlock login of selected users", permissions=["change"])
def unlock_login(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    """Clear the failed-password lock (and count) of each selected account."""
    names = [user.get_username() for user in queryset]
    unlocked = [name for name in names if unlock_account(name)]
    if unlocked:
        modeladmin.message_user(
            request, f"Unlocked: {', '.join(unlocked)}. They can log in again.", messages.SUCCESS
        )
    others = len(names) - len(unlocked)
    if others:
        modeladmin.message_user(
            request,
            f"{others} selected account{'s were' if others != 1 else ' was'} not locked; "
            "their failed attempts were cleared.",
            messages.INFO,
        )


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    actions = [*DjangoUserAdmin.actions, unlock_login]
