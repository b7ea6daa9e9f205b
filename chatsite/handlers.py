"""Django's ASGI handler, with each request's thread for sync work reused, not made anew.

Django gives every request a ThreadSensitiveContext of its own: the request's sync work
(its signals, sync views, the ORM, closing its response) runs on a thread of its own, so
that requests do not queue behind each other on one thread. asgiref starts that thread at
the request's first sync call, and at its end joins it from yet another thread: two threads
started per request. Profiled under a flood of small requests, starting and joining them was
a third of the event loop's time (21% in Thread.start, 11% in the join), and a greedy client
could keep a process so busy that other users' requests waited two seconds.

Here each HTTP request takes a single-thread executor from a pool and gives it back when it
ends (asgiref's ThreadSensitiveContext(executor=...)): one request at a time on each, as
before, and no thread started once the pool is warm. A request closes its database
connections at its end (request_finished, CONN_MAX_AGE 0), so the next one finds the thread
clean. Work that outlives its request must not use the request's thread: the turn runner
starts its task outside any request's context (streaming.detached).
"""

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler
from django.db import connections

# Idle threads kept for the next requests; more are made when more requests run at once.
MAX_IDLE_THREADS = 64


class RequestThreads:
    """Single-thread executors, one per running request, reused."""

    def __init__(self, max_idle: int = MAX_IDLE_THREADS) -> None:
        self.max_idle = max_idle
        self._idle: list[ThreadPoolExecutor] = []

    def take(self) -> ThreadPoolExecutor:
        if self._idle:
            return self._idle.pop()
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        if len(self._idle) < self.max_idle:
            # Before the next request's work (the queue is first in, first out): a request
            # that ended in an error may not have closed its connection.
            executor.submit(connections.close_all)
            self._idle.append(executor)
        else:
            executor.shutdown(wait=False)

    def idle(self) -> int:
        return len(self._idle)


class PooledThreadsASGIHandler(ASGIHandler):
    """ASGIHandler whose requests take their sync thread from RequestThreads."""

    def __init__(self) -> None:
        super().__init__()
        self.threads = RequestThreads()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)  # refused as Django does
        executor = self.threads.take()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self.threads.give_back(executor)
