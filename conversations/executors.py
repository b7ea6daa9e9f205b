"""Thread pools for blocking work that must not take the threads other work needs.

Work that may wait long, and is not a request's own (a save waiting for a pooled connection
after its response has gone), gets a pool of its own, so that it never queues other work
behind it:

* `post_stream`: saves, hooks, checkpoints, sweeps (POST_STREAM_WORKERS threads);
* `spool`: writing a turn to the spool while the database is away (the post-stream threads
  then all wait for it).
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections


@cache
def post_stream() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        max_workers=settings.POST_STREAM_WORKERS, thread_name_prefix="post-stream"
    )


@cache
def spool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="spool")


async def run_in[T](
    executor: ThreadPoolExecutor, function: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """Run blocking work on `executor`'s threads, and hand the thread's database connection
    back to the pool as soon as it returns. Not thread-sensitive: the request's own thread
    may be gone by the time it runs."""

    def call() -> T:
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()

    return await sync_to_async(call, thread_sensitive=False, executor=executor)()


async def in_post_stream_thread[T](function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking database work (a save, a hook, a checkpoint, a sweep) on the post-stream
    threads: a save waiting for a pooled connection must never hold one of the default
    executor's threads, which Django needs (to log an error response, for one)."""
    return await run_in(post_stream(), function, *args, **kwargs)
