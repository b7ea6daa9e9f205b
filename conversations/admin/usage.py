"""Reads for the admin's usage overview: who asked how much, how it went, and how fast.

A request is one answer (a turn), whatever became of it; tokens are the saved usage (counted
by us where the model did not report it). Percentiles are nearest-rank over the answers that
produced a first token.
"""

import datetime
import math
from dataclasses import dataclass

from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from conversations.models import Message


@dataclass(frozen=True)
class UsageOverview:
    start: datetime.date
    end: datetime.date
    per_user_per_day: list[dict]
    top_users: list[dict]
    requests: int
    completed: int
    stopped: int
    failed: int
    # The server's own ends (restarts, crashes): neither the model's failures nor users' Stops.
    interrupted: int
    ttft_percentiles: dict[str, int | None]

    @property
    def error_rate(self) -> float:
        return self.failed / self.requests if self.requests else 0.0

    @property
    def stop_rate(self) -> float:
        return self.stopped / self.requests if self.requests else 0.0


def percentile(sorted_values: list[int], p: float) -> int | None:
    """Nearest-rank percentile of an ascending list: the smallest value with p% at or below."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def usage_overview(*, start: datetime.date, end: datetime.date, top: int = 10) -> UsageOverview:
    """Summarise the answers created from `start` to `end`, both days included."""
    zone = timezone.get_current_timezone()
    since = datetime.datetime.combine(start, datetime.time.min, tzinfo=zone)
    next_day = end + datetime.timedelta(days=1)
    until = datetime.datetime.combine(next_day, datetime.time.min, tzinfo=zone)
    answers = Message.objects.filter(is_answer=True, created_at__gte=since, created_at__lt=until)
    prompt, completion = Coalesce(Sum("prompt_tokens"), 0), Coalesce(Sum("completion_tokens"), 0)
    tokens = {
        "requests": Count("pk"),
        "prompt": prompt,
        "completion": completion,
        "total_tokens": prompt + completion,
    }
    per_day = list(
        answers.annotate(day=TruncDate("created_at", tzinfo=zone))
        .values("day", "user__username")
        .annotate(**tokens)
        .order_by("day", "user__username")
    )
    top_users = list(
        answers.values("user__username")
        .annotate(**tokens)
        .order_by("-total_tokens", "-requests", "user__username")[:top]
    )
    counts = answers.aggregate(
        requests=Count("pk"),
        completed=Count("pk", filter=Q(status=Message.Status.COMPLETED)),
        stopped=Count("pk", filter=Q(status=Message.Status.STOPPED)),
        failed=Count("pk", filter=Q(status=Message.Status.FAILED)),
        interrupted=Count("pk", filter=Q(status=Message.Status.INTERRUPTED)),
    )
    ttfts = sorted(
        answers.exclude(time_to_first_token_ms=None).values_list(
            "time_to_first_token_ms", flat=True
        )
    )
    return UsageOverview(
        start=start,
        end=end,
        per_user_per_day=per_day,
        top_users=top_users,
        ttft_percentiles={f"p{p}": percentile(ttfts, p) for p in (50, 90, 99)},
        **counts,
    )
