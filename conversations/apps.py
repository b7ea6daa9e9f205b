from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = "Conversations"

    def ready(self) -> None:
        # Imported for what they register: the system checks, and the receivers that forget
        # cached rows when they change.
        from conversations import checks, signals  # noqa: F401
