"""Run the post-stream hooks listed in settings.POST_STREAM_HOOKS with a finished turn.

The save is an explicit call from the pipeline, not a signal receiver that must be imported to
exist; it comes first, and a failing hook is logged without stopping the ones after it.
"""

import inspect
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.utils.module_loading import import_string

from conversations.turns import FinishedTurn

logger = logging.getLogger(__name__)


@cache
def _executor() -> ThreadPoolExecutor:
    # Post-stream work waits for a pooled connection; on Django's default executor it could
    # take every thread that Django itself needs (to log an error response, for one).
    return ThreadPoolExecutor(
        max_workers=settings.POST_STREAM_WORKERS, thread_name_prefix="post-stream"
    )


@cache
def _hooks(paths: tuple[str, ...]) -> tuple[Callable[[FinishedTurn], object], ...]:
    return tuple(import_string(path) for path in paths)


def post_stream_hooks() -> tuple[Callable[[FinishedTurn], object], ...]:
    return _hooks(tuple(settings.POST_STREAM_HOOKS))


def _call_in_worker_thread(hook: Callable[[FinishedTurn], object], turn: FinishedTurn) -> None:
    # A worker thread opens its own database connection; hand it back to the pool at once.
    try:
        hook(turn)
    finally:
        connections.close_all()


async def run_post_stream_hooks(turn: FinishedTurn) -> None:
    """Call every post-stream hook with the finished turn, in order."""
    for hook in post_stream_hooks():
        try:
            if inspect.iscoroutinefunction(hook):
                await hook(turn)
            else:
                # Not thread-sensitive: the request's own thread may be gone by now.
                await sync_to_async(
                    _call_in_worker_thread, thread_sensitive=False, executor=_executor()
                )(hook, turn)
        except Exception:
            logger.exception(
                "Post-stream hook %s failed for request %s", hook.__qualname__, turn.request_id
            )
