import asyncio
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from conversations.services import turns_close_interrupted
from conversations.turns.lifecycle import end_logs_of_interrupted


class Command(BaseCommand):
    help = (
        "Mark answers still 'streaming' whose heartbeat is stale as interrupted, keeping their "
        "checkpointed text: the server process running them died (a crash or a hard kill). "
        "Their readers, in any process, are sent a final event. Every server process also "
        "does this at start-up and every minute."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--stale-seconds",
            type=float,
            default=None,
            help="How old a heartbeat must be (default TURN_HEARTBEAT_STALE_SECONDS, "
            f"{settings.TURN_HEARTBEAT_STALE_SECONDS:g}). A fresh one is never touched.",
        )

    def handle(self, *args, stale_seconds: float | None, **options) -> None:
        seconds = settings.TURN_HEARTBEAT_STALE_SECONDS if stale_seconds is None else stale_seconds
        closed = turns_close_interrupted(stale_before=timezone.now() - timedelta(seconds=seconds))
        asyncio.run(end_logs_of_interrupted(closed))
        self.stdout.write(f"Marked {len(closed)} answer(s) whose server stopped as interrupted.")
