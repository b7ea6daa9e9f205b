"""Conversations and their messages: every turn a user had with a model."""

from django.conf import settings
from django.db import models
from django.urls import reverse


class Conversation(models.Model):
    class Source(models.TextChoices):
        WEB = "web", "Web chat"
        API = "api", "API"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    # The model key, "<endpoint>/<upstream model id>", used for the conversation's next turn.
    model = models.CharField(max_length=200)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.WEB)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-pk"]
        indexes = [
            models.Index(fields=["owner", "-updated_at"], name="conv_owner_updated_idx"),
            # The chat page lists only web chats, however many API threads a user has.
            models.Index(
                fields=["owner", "source", "-updated_at"], name="conv_owner_source_updated_idx"
            ),
        ]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("conversations:conversation", args=[self.pk])


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system", "System"
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    class Status(models.TextChoices):
        STREAMING = "streaming", "Streaming"
        COMPLETED = "completed", "Completed"
        STOPPED = "stopped", "Stopped"
        FAILED = "failed", "Failed"
        # The server's own end: a restart, a crash, a deploy's grace period running out.
        INTERRUPTED = "interrupted", "Interrupted"

    class Purpose(models.TextChoices):
        CHAT = "chat", "Chat"
        # A title the conversation's model wrote for it (CHAT_GENERATED_TITLES): kept like
        # every model call, with its usage, but never part of the thread.
        TITLE = "title", "Generated title"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    # Denormalised from the conversation so that every saved turn carries its user ID.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    purpose = models.CharField(max_length=8, choices=Purpose.choices, default=Purpose.CHAT)
    content = models.TextField(blank=True)
    # True for the model's answer to this row's request. Every other row is something the
    # client sent: the chat page's question, or any message of an API prompt, assistant
    # messages (earlier history or a prefill) included.
    is_answer = models.BooleanField(default=False)
    reasoning = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETED)
    finish_reason = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=200, blank=True)
    # Our request ID: the prompt's messages and the answer to it share one.
    request_id = models.CharField(max_length=128)
    upstream_id = models.CharField("upstream response ID", max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    # False when the stream ended before the model reported usage: completion_tokens then
    # counts the content chunks we received, which is an estimate.
    usage_reported = models.BooleanField(default=False)
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # How long the model thought: from its first reasoning to its first text (or to the end
    # of the answer, when no text came). None for an answer without reasoning.
    reasoning_ms = models.PositiveIntegerField(null=True, blank=True)
    # The system prompt sent first to the model for this answer (web chats; the endpoints
    # file's `system_prompt` at the time): the record of what the model received, whatever
    # the file says later.
    system_prompt = models.TextField(blank=True)
    error = models.TextField(blank=True)
    # Conversations are trees: each message follows its parent (a question its answer, an
    # answer the question before). Regenerating adds a sibling answer, editing a sibling
    # question; siblings are the versions the chat page shows as "< 1/2 >". An API call that
    # sends a thread's history again branches it the same way (conversations.threads).
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children"
    )
    # Set while the message is off the branch the user is shown (regenerated, edited, or
    # another version chosen): it leaves the thread and the model's context, but stays in
    # the database as a record, and comes back when its version is shown again.
    superseded_at = models.DateTimeField(null=True, blank=True)
    # API conversations only: the hash of the thread up to and including this message, as a
    # client sends it back (conversations.threads), which later calls' histories are matched
    # against. Empty on web chats, and on answers that did not complete (a client retries
    # their prompt instead). `merged_thread_hash`, on an answer that continued a prefill (the
    # prompt ended with an assistant message), is the same thread with the prefill and the
    # answer as one assistant message, which is how many clients send it back.
    thread_hash = models.CharField(max_length=64, blank=True, default="")
    merged_thread_hash = models.CharField(max_length=64, blank=True, default="")
    # A streaming answer's last sign of life: its runner checkpoints the partial text and
    # refreshes this every few seconds. A stale one means the process running it is gone.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # A streaming answer's checkpointed text holds its events up to this one (numbered as
    # in the turn's event log): a page opened mid-answer shows the text and follows the
    # events after it, rather than replaying the answer from its start.
    checkpoint_event = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["conversation_id", "pk"]
        # Stopping someone else's answer from the admin's live view (conversations.admin.live).
        permissions = [("stop_turn", "Can stop a user's running answer")]
        constraints = [
            # One answer per request: a repeated request ID is refused, and a finished answer
            # can never be saved twice. (An API call saves several prompt messages under it,
            # assistant messages among them.)
            # Scoped to the user: another user's request ID neither blocks nor reveals.
            models.UniqueConstraint(
                fields=["user", "request_id"],
                condition=models.Q(is_answer=True),
                name="msg_one_answer_per_user_request",
            ),
        ]
        indexes = [
            models.Index(fields=["request_id"], name="msg_request_idx"),
            models.Index(fields=["conversation", "id"], name="msg_conversation_idx"),
            models.Index(fields=["user", "-created_at"], name="msg_user_created_idx"),
            models.Index(fields=["status", "-created_at"], name="msg_status_created_idx"),
            models.Index(fields=["upstream_id"], name="msg_upstream_idx"),
            # An API call's history is looked up among the user's thread hashes.
            models.Index(
                fields=["user", "thread_hash"],
                condition=~models.Q(thread_hash=""),
                name="msg_user_thread_idx",
            ),
            models.Index(
                fields=["user", "merged_thread_hash"],
                condition=~models.Q(merged_thread_hash=""),
                name="msg_user_merged_thread_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_role_display()} message {self.pk} ({self.request_id})"


class ApiKey(models.Model):
    """A user's key for the API. Only a hash is stored; the key is shown once, at creation."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    # The first characters of the key, enough to recognise it in a list.
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField("SHA-256 of the key", max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "API key"
        indexes = [models.Index(fields=["user", "-created_at"], name="apikey_user_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class UserLimits(models.Model):
    """Staff overrides of one user's limits; an empty field uses the site-wide setting."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_limits"
    )
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    max_concurrent_streams = models.PositiveIntegerField(null=True, blank=True)
    daily_token_quota = models.PositiveIntegerField(
        null=True, blank=True, help_text="0 means no quota."
    )

    class Meta:
        verbose_name = verbose_name_plural = "user limits"

    def __str__(self) -> str:
        return f"Limits of {self.user}"


class DailyUsage(models.Model):
    """Tokens charged to a user on one day: what the daily quota is checked against.

    A ledger of its own, so that deleting conversations gives no quota back. Each answer is
    charged once, when it is saved, however it ended (a stopped or failed one for its prompt
    at least, counted by us when the model reported nothing).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="daily_usage"
    )
    day = models.DateField()
    tokens = models.PositiveBigIntegerField(default=0)
    answers = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = verbose_name_plural = "daily usage"
        constraints = [
            models.UniqueConstraint(fields=["user", "day"], name="usage_one_row_per_user_day")
        ]

    def __str__(self) -> str:
        return f"{self.user} on {self.day}: {self.tokens} tokens"


class TurnAudit(models.Model):
    """A staff member watched or stopped a user's answer from the admin's live view.

    A record of staff looking at users' answers as they are written: written by the live
    view itself (conversations.admin.live), never edited, and deleted by nobody in the admin.
    Deleting the staff account is refused while it has records (deactivate it instead), so
    that nobody erases who looked; the owner's account or the answer may go (their data is
    deleted on request), and the record keeps the request ID.
    """

    class Action(models.TextChoices):
        VIEW = "view", "Watched"
        STOP = "stop", "Stopped"

    staff = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="turn_audits"
    )
    action = models.CharField(max_length=8, choices=Action.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="audited_turns",
        verbose_name="turn owner",
    )
    request_id = models.CharField(max_length=128)
    message = models.ForeignKey(
        Message, on_delete=models.SET_NULL, null=True, related_name="audits", verbose_name="answer"
    )
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name = "turn audit record"
        indexes = [models.Index(fields=["staff", "-at"], name="turnaudit_staff_at_idx")]

    def __str__(self) -> str:
        return f"{self.staff} {self.get_action_display().lower()} {self.request_id}"
