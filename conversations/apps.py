from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = "Conversations"

    def ready(self) -> None:
        # Imported for what they register: the system checks (chatsite.middleware's security
        # check among them), and the receivers that forget cached rows when they change.
        from chatsite import middleware  # noqa: F401
        from conversations import checks, signals  # noqa: F401
