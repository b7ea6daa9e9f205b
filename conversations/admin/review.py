"""The review admin: saved conversations are records, read by staff and never edited here.

Reviewing needs only view permissions; nobody adds or changes a transcript, and only
superusers delete. A conversation's metadata (title, owner, model, counts, statuses) needs
*view conversation*; the words of its messages, wherever the admin shows them (transcript,
exports, message text search, the message pages), need *view message* too. Every action
names the permission it needs. Lists annotate what they show in one query, so a page of 200
rows costs what a page of 10 does.
"""

import datetime
from collections.abc import Mapping

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db.models import Count, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponseBadRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

# The user admin with its unlock action; it registers itself on import.
import conversations.admin.accounts  # noqa: F401
from conversations import providers, search, selectors
from conversations.accounts import apikeys
from conversations.admin import exports, live, usage
from conversations.models import ApiKey, Conversation, Message, TurnAudit, UserLimits

# Far enough apart for any real period, and far enough from the calendar's ends that a period
# around them can be computed (9999-12-31 plus a day is no date).
EARLIEST_DAY, LATEST_DAY = datetime.date(1970, 1, 1), datetime.date(9000, 12, 31)


class RecordAdmin(admin.ModelAdmin):
    """Read-only for everyone; only superusers delete."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def changelist_view(self, request: HttpRequest, extra_context=None):
        if problem := date_hierarchy_problem(request.GET, self.date_hierarchy):
            return HttpResponseBadRequest(problem, content_type="text/plain; charset=utf-8")
        return super().changelist_view(request, extra_context)


# The date hierarchy's year, month and day, as the changelist's links write them. Django turns
# them into dates only when the query runs, so a year past 9999 was a 500.
DATE_PARTS = {"year": (EARLIEST_DAY.year, LATEST_DAY.year), "month": (1, 12), "day": (1, 31)}


def date_hierarchy_problem(query: Mapping[str, str], field: str | None) -> str:
    """Say what is wrong with the date-hierarchy parameters of a changelist URL, if anything."""
    for part, (low, high) in DATE_PARTS.items():
        raw = query.get(f"{field}__{part}")
        if raw is None:
            continue
        if not (raw.isascii() and raw.isdigit() and low <= int(raw) <= high):
            return f"{field}__{part} must be a whole number from {low} to {high}."
    return ""


class LastStatusFilter(admin.SimpleListFilter):
    title = "status of the last answer"
    parameter_name = "last_status"

    def lookups(self, request, model_admin):
        return Message.Status.choices

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(last_status=self.value())
        return queryset


class MessageModelFilter(admin.SimpleListFilter):
    """By model, each by its label; messages a client sent (which name no model) have a
    choice of their own. Django's default for the field lists them as a link with no text."""

    title = "model"
    parameter_name = "model"
    NONE = "-"

    def lookups(self, request, model_admin):
        labels = {option.key: option.label for option in providers.model_options()}
        keys = Message.objects.exclude(model="").values_list("model", flat=True).distinct()
        choices = [(key, f"{labels[key]} ({key})" if key in labels else key) for key in keys]
        return [
            *sorted(choices, key=lambda c: c[1].lower()),
            (self.NONE, "None (sent by a client)"),
        ]

    def queryset(self, request, queryset):
        if self.value() == self.NONE:
            return queryset.filter(model="")
        if self.value():
            return queryset.filter(model=self.value())
        return queryset


def _mark_versions(transcript: list[Message], tree: "selectors.MessageTree") -> None:
    """Give each message of a transcript listed flat (every version, in order) where it
    stands: `versions` ("2 of 3") when it has others, and `answers` the question an answer
    version answers, so a reviewer can tell the branches apart."""
    for message in transcript:
        message.versions = tree.other_versions(message.pk)
        is_answer_version = message.versions and message.role == Message.Role.ASSISTANT
        message.answers = message.parent_id if is_answer_version else None


def last_answer(field: str) -> Subquery:
    answers = Message.objects.filter(
        conversation=OuterRef("pk"), is_answer=True, superseded_at__isnull=True
    ).order_by("-pk")
    return Subquery(answers.values(field)[:1])


# Shown on a conversation's page too, from the annotations of ConversationAdmin.get_queryset.
FIGURES = ("message_count", "tokens", "last_status")


@admin.register(Conversation)
class ConversationAdmin(RecordAdmin):
    list_display = (
        "title_link",
        "owner_link",
        "model",
        "message_count",
        "tokens",
        "last_status",
        "source",
        "created_at",
        "updated_at",
    )
    list_filter = (
        LastStatusFilter,
        "model",
        "source",
        ("owner", admin.RelatedOnlyFieldListFilter),
        "owner__is_staff",
        "created_at",
    )
    # Searched by search.search_conversations; listing a field here turns the box on.
    search_fields = ("title",)
    search_help_text = "Titles, usernames, emails, exact request or upstream response IDs"
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-pk")
    list_select_related = ("owner",)
    list_per_page = 50
    actions = ["export_jsonl", "export_csv"]
    change_form_template = "admin/conversations/conversation/transcript.html"
    change_list_template = "admin/conversations/conversation/change_list.html"
    fields = ("title", "owner", "model", "source", "created_at", "updated_at", *FIGURES)
    readonly_fields = FIGURES
    # The site's page for a conversation is its owner's chat: a 404 for anyone else.
    view_on_site = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                message_count=Count("messages", distinct=True),
                tokens=Coalesce(Sum("messages__prompt_tokens"), 0)
                + Coalesce(Sum("messages__completion_tokens"), 0),
                last_status=last_answer("status"),
            )
        )

    def has_read_messages_permission(self, request: HttpRequest, obj=None) -> bool:
        """Whether the request may read message text: the Message admin's view permission."""
        return self.admin_site.get_model_admin(Message).has_view_permission(request)

    def get_search_results(self, request, queryset, search_term):
        return search.search_conversations(
            queryset, search_term, message_text=self.has_read_messages_permission(request)
        )

    def get_changelist_instance(self, request: HttpRequest):
        changelist = super().get_changelist_instance(request)
        if self.has_read_messages_permission(request):
            changelist.search_help_text = f"{self.search_help_text}, and message text."
        else:
            changelist.search_help_text = (
                f"{self.search_help_text}. Message text is searched with the "
                '"view message" permission.'
            )
        return changelist

    @admin.display(description="title", ordering="title")
    def title_link(self, obj: Conversation) -> str:
        return obj.title or f"Conversation {obj.pk}"

    @admin.display(description="owner", ordering="owner__username")
    def owner_link(self, obj: Conversation) -> str:
        url = reverse("admin:auth_user_change", args=[obj.owner_id])
        return format_html('<a href="{}">{}</a>', url, obj.owner.get_username())

    @admin.display(description="messages", ordering="message_count")
    def message_count(self, obj: Conversation) -> int:
        return obj.message_count

    @admin.display(description="tokens", ordering="tokens")
    def tokens(self, obj: Conversation) -> int:
        return obj.tokens

    @admin.display(description="last answer", ordering="last_status")
    def last_status(self, obj: Conversation) -> str:
        return Message.Status(obj.last_status).label if obj.last_status else "—"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        can_read = self.has_view_permission(request) and self.has_read_messages_permission(request)
        transcript = []
        conversation = self.get_object(request, object_id) if can_read else None
        if conversation is not None:
            transcript = list(conversation.messages.select_related("user").order_by("pk"))
            _mark_versions(transcript, selectors.message_tree(conversation=conversation))
        extra_context = {
            **(extra_context or {}),
            "transcript": transcript,
            "can_read_messages": can_read,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        usage_view = self.admin_site.admin_view(self.usage_view)
        return [path("usage/", usage_view, name="conversations_usage"), *super().get_urls()]

    def usage_view(self, request: HttpRequest) -> TemplateResponse:
        """Requests and tokens per user per day, top users, error and stop rates, and
        time-to-first-token percentiles, for a chosen period."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = UsagePeriodForm(request.GET or None)
        start, end = form.period()
        context = {
            **self.admin_site.each_context(request),
            "title": "Usage overview",
            "opts": self.model._meta,
            "form": form,
            "overview": usage.usage_overview(start=start, end=end),
        }
        # A period that is no date is shown as an error, over the default week.
        status = 400 if form.errors else 200
        return TemplateResponse(request, "admin/conversations/usage.html", context, status=status)

    # Both exports carry every message's text: not offered without "view message".
    @admin.action(
        description="Export selected conversations as JSONL", permissions=["read_messages"]
    )
    def export_jsonl(self, request, queryset):
        return exports.conversations_jsonl_response(queryset)

    @admin.action(
        description="Export messages of selected conversations as CSV",
        permissions=["read_messages"],
    )
    def export_csv(self, request, queryset):
        return exports.messages_csv_response(queryset)


def period_day() -> forms.DateField:
    return forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        validators=[MinValueValidator(EARLIEST_DAY), MaxValueValidator(LATEST_DAY)],
    )


class UsagePeriodForm(forms.Form):
    start = period_day()
    end = period_day()

    DEFAULT_DAYS = 7

    def period(self) -> tuple[datetime.date, datetime.date]:
        """Return the chosen days, or the last week; a reversed period is put right."""
        today = timezone.localdate()
        start = end = None
        if self.is_bound and self.is_valid():
            start, end = self.cleaned_data["start"], self.cleaned_data["end"]
        end = end or today
        start = start or end - datetime.timedelta(days=self.DEFAULT_DAYS - 1)
        return (end, start) if start > end else (start, end)


@admin.register(Message)
class MessageAdmin(RecordAdmin):
    """A message's page shows its text: it needs *view message* (Django's default check)."""

    list_display = (
        "id",
        "role",
        "status",
        "user",
        "conversation_link",
        "model",
        "request_id",
        "completion_tokens",
        "created_at",
    )
    list_filter = ("status", "role", MessageModelFilter, "created_at")
    search_fields = ("=request_id", "=upstream_id", "user__username")
    list_select_related = ("user", "conversation")
    date_hierarchy = "created_at"
    ordering = ("-pk",)
    change_list_template = "admin/conversations/message/change_list.html"

    @admin.display(description="conversation", ordering="conversation")
    def conversation_link(self, obj: Message) -> str:
        url = reverse("admin:conversations_conversation_change", args=[obj.conversation_id])
        return format_html('<a href="{}">{}</a>', url, obj.conversation)

    def get_urls(self):
        # The live view of running answers (watch, Stop): conversations.admin.live.
        return [*live.urls(self), *super().get_urls()]


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

    # Revoking is a write: view-only staff must not be offered it (nor be able to post it).
    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request, queryset) -> None:
        count = apikeys.api_keys_revoke(keys=queryset)
        self.message_user(request, f"Revoked {count} key(s).")


@admin.register(UserLimits)
class UserLimitsAdmin(admin.ModelAdmin):
    list_display = ("user", "requests_per_minute", "max_concurrent_streams", "daily_token_quota")
    search_fields = ("user__username", "user__email")
    autocomplete_fields = ("user",)


@admin.register(TurnAudit)
class TurnAuditAdmin(RecordAdmin):
    """Who watched or stopped which user's answer from the live view, and when. Written only
    by the live view (conversations.admin.live); nobody adds, edits or deletes a record here,
    superusers included, so the record stays whole."""

    list_display = ("at", "staff", "action", "owner", "answer_link", "request_id")
    list_filter = ("action", ("staff", admin.RelatedOnlyFieldListFilter), "at")
    search_fields = ("=request_id", "staff__username", "owner__username")
    list_select_related = ("staff", "owner")
    date_hierarchy = "at"
    ordering = ("-at", "-pk")

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="answer", ordering="message")
    def answer_link(self, obj: TurnAudit) -> str:
        if obj.message_id is None:
            return "—"
        url = reverse("admin:conversations_message_change", args=[obj.message_id])
        return format_html('<a href="{}">Message {}</a>', url, obj.message_id)
