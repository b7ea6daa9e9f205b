from datetime import timedelta

from django.core.management.base import BaseCommand
from django.utils import timezone

from conversations.services import turns_close_interrupted


class Command(BaseCommand):
    help = (
        "Mark answers still 'streaming' long after they started as failed: their server "
        "process died mid-stream (a crash or a hard kill), so no post-stream hook ran."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--older-than-minutes",
            type=int,
            default=30,
            help="Only answers started at least this long ago (default 30).",
        )

    def handle(self, *args, older_than_minutes: int, **options) -> None:
        cutoff = timezone.now() - timedelta(minutes=older_than_minutes)
        closed = turns_close_interrupted(started_before=cutoff)
        self.stdout.write(f"Marked {closed} interrupted answer(s) as failed.")
