"""Run the extra post-stream hooks of settings.POST_STREAM_HOOKS with each finished turn.

The save is not one of the hooks: the runner saves the turn first, always, by name
(conversations.turns.saving), so no setting can disable it, and nothing a hook does (failing, or
not importing at all) affects it. Hook paths
are checked at start-up (`manage.py check`, conversations.E003) and, should one still fail to
import, it is logged and skipped.
"""

import inspect
import logging
from collections.abc import Callable
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from conversations.executors import in_post_stream_thread
from conversations.records import FinishedTurn

logger = logging.getLogger(__name__)

Hook = Callable[[FinishedTurn], object]


def hook_import_errors(paths: list[str]) -> list[str]:
    """Describe each path that does not import to a callable (the system check's job)."""
    errors = []
    for path in paths:
        try:
            hook = import_string(path)
        except ImportError as exc:
            errors.append(f"POST_STREAM_HOOKS: {path!r} cannot be imported: {exc}")
            continue
        if not callable(hook):
            errors.append(f"POST_STREAM_HOOKS: {path!r} is not callable.")
    return errors


@cache
def _hooks(paths: tuple[str, ...]) -> tuple[Hook, ...]:
    hooks = []
    for path in paths:
        try:
            hooks.append(import_string(path))
        except ImportError:
            logger.exception("Post-stream hook %s cannot be imported; it is skipped", path)
    return tuple(hooks)


def post_stream_hooks() -> tuple[Hook, ...]:
    """The extra hooks, in the order of POST_STREAM_HOOKS (the save is not among them)."""
    return _hooks(tuple(settings.POST_STREAM_HOOKS))


async def _call(hook: Hook, turn: FinishedTurn) -> None:
    if inspect.iscoroutinefunction(hook):
        await hook(turn)
    else:
        await in_post_stream_thread(hook, turn)


async def run_post_stream_hooks(turn: FinishedTurn) -> None:
    """Call every extra hook with the finished (already saved) turn, in order; one failing
    is logged and the others still run."""
    for hook in post_stream_hooks():
        try:
            await _call(hook, turn)
        except Exception:
            logger.exception(
                "Post-stream hook %s failed for request %s", hook.__qualname__, turn.request_id
            )
