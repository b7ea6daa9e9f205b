"""Django's ASGI handler, with each request's thread for sync work reused, not made anew.

Django gives every request a ThreadSensitiveContext of its own: the request's sync work
(its signals, sync views, the ORM, closing its response) runs on a thread of its own, so
that requests do not queue behind each other on one thread. asgiref starts that thread at
the request's first sync call, and at its end joins it from yet another thread: two threads
started per request. Profiled under a flood of small requests, starting and joining them was
a third of the event loop's time (21% in Thread.start, 11% in the join), and a greedy client
could keep a process so busy that other users' requests waited two seconds.

Here each HTTP request's sync work goes to a single-thread executor taken from a pool at its
first sync call (asgiref's ThreadSensitiveContext(executor=...)): one request at a time on
each, as before, and no thread started once the pool is warm. The executor goes back when
the request ends, or as soon as its response starts streaming: a stream does no sync work
until its end, and a thread held by each of a thousand open streams was 19 KB of each one's
memory (its end's one sync call, closing the response, takes a thread from the pool again).
An executor is handed on only after its connections are closed (queued before anything
else on it), so the next request finds the thread clean. Work that outlives its request
must not use the request's thread: the turn runner starts its task outside any request's
context (streaming.detached).
"""

import asyncio
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import closing

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import connections
from django.http import HttpResponseBase
from django.urls import set_script_prefix

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


class RequestExecutor(Executor):
    """One request's executor: a thread of the pool, taken at its first sync call and given
    back by `release` (its end, or its response starting to stream)."""

    def __init__(self, threads: RequestThreads) -> None:
        self._threads = threads
        self._current: ThreadPoolExecutor | None = None

    def submit(self, fn, /, *args, **kwargs) -> Future:
        if self._current is None:
            self._current = self._threads.take()
        return self._current.submit(fn, *args, **kwargs)

    def release(self) -> None:
        if self._current is not None:
            current, self._current = self._current, None
            self._threads.give_back(current)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.release()


class PooledThreadsASGIHandler(ASGIHandler):
    """ASGIHandler whose requests take their sync thread from RequestThreads."""

    def __init__(self) -> None:
        super().__init__()
        self.threads = RequestThreads()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)  # refused as Django does
        executor = RequestExecutor(self.threads)
        scope = scope | {"chatsite.executor": executor}
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            executor.release()

    async def handle(self, scope, receive, send):
        """Django 6.1's ASGIHandler.handle, but a streaming response does not keep its
        request alive while it streams: the request (its headers, session, user, body) is
        made and dropped within `_respond`, and closed as the stream starts. Django's own
        holds it in its frame until the stream ends: 1,000 open streams held 1,000
        requests."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        with closing(body_file):
            set_script_prefix(get_script_prefix(scope))
            await signals.request_started.asend(sender=self.__class__, scope=scope)

            class RequestProcessed(Exception):
                pass

            response = None
            try:
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self.listen_for_disconnect(receive))
                        response = await self._respond(scope, body_file)
                        await self.send_response(response, send)
                        raise RequestProcessed
                except* (RequestProcessed, RequestAborted):
                    pass
            except BaseExceptionGroup as exception_group:
                if len(exception_group.exceptions) == 1:
                    raise exception_group.exceptions[0]  # noqa: B904 (as Django does)
                raise
            if response is None:
                await signals.request_finished.asend(sender=self.__class__)
            else:
                await sync_to_async(response.close)()

    async def _respond(self, scope, body_file) -> HttpResponseBase:
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            return error_response
        response = await self.run_get_response(request)
        if response.streaming:
            # The view is done with its request: close it now (Django would at the end).
            if request.close in response._resource_closers:
                response._resource_closers.remove(request.close)
            request.close()
            # Nothing runs in the request's thread while it streams; its end takes one again.
            executor = scope.get("chatsite.executor")
            if executor is not None:
                executor.release()
        return response
