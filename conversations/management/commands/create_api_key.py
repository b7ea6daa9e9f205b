from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from conversations.accounts.apikeys import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a user and print it; the key is not stored and not shown again."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="command line")

    def handle(self, *args, username: str, name: str, **options) -> None:
        try:
            user = get_user_model().objects.get_by_natural_key(username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user {username!r}.") from None
        api_key, raw_key = api_key_create(user=user, name=name)
        self.stderr.write(f"Created API key {api_key.name!r} ({api_key.prefix}…) for {username}.")
        self.stdout.write(raw_key)
