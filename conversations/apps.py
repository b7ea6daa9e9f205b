from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = "Conversations"

    def ready(self) -> None:
        # Imported for what they register: the system checks (chatsite.middleware's security
        # check among them), and the receivers that forget cached rows when they change.
        # And the handlers of messages from other processes (conversations.bus): a process
        # must act on every kind it is sent, whatever it has imported so far.
        from chatsite import middleware  # noqa: F401
        from conversations import checks, signals  # noqa: F401
        from conversations.turns import live, registry  # noqa: F401
        from conversations.web import consumers  # noqa: F401
