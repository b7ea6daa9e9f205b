from django.contrib import admin
from django.db.models import Count
from django.utils import timezone

from conversations.models import ApiKey, Conversation, Message, UserLimits


class MessageInline(admin.TabularInline):
    """Read-only: a saved transcript is a record, not a draft."""

    model = Message
    fields = ("role", "status", "content", "request_id", "completion_tokens", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = (
        "title",
        "owner",
        "model",
        "source",
        "message_count",
        "created_at",
        "updated_at",
    )
    list_filter = ("source", "model", "created_at")
    search_fields = ("title", "owner__username", "owner__email", "messages__request_id")
    list_select_related = ("owner",)
    date_hierarchy = "created_at"
    readonly_fields = ("owner", "model", "source", "created_at", "updated_at")
    inlines = [MessageInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(message_count=Count("messages"))

    @admin.display(ordering="message_count", description="messages")
    def message_count(self, obj: Conversation) -> int:
        return obj.message_count


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "role",
        "status",
        "user",
        "model",
        "request_id",
        "completion_tokens",
        "created_at",
    )
    list_filter = ("status", "role", "model", "created_at")
    search_fields = ("request_id", "upstream_id", "user__username", "content")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    ordering = ("-pk",)
    readonly_fields = [f.name for f in Message._meta.fields]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created by their users (or `manage.py create_api_key`); staff revoke them."""

    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at", "created_at")
    search_fields = ("name", "prefix", "user__username", "user__email")
    list_select_related = ("user",)
    readonly_fields = ("user", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    exclude = ("key_hash",)
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} key(s).")


@admin.register(UserLimits)
class UserLimitsAdmin(admin.ModelAdmin):
    list_display = ("user", "requests_per_minute", "max_concurrent_streams", "daily_token_quota")
    search_fields = ("user__username", "user__email")
    autocomplete_fields = ("user",)
