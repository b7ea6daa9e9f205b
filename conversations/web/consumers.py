"""The chat over a WebSocket, at /ws/chat/: the same turns, limits, save and events as the
chat page's Server-Sent Events, on one socket that can follow several answers at once.

A client sends JSON messages:

    {"type": "send", "message": "...", "conversation"?: 12, "model"?: "...", "request_id"?: "..."}
    {"type": "regenerate" | "edit", "conversation": 12, "message_id"?: 34, "message"?: "..."}
    {"type": "attach", "request_id": "...", "last_event_id"?: 17}
    {"type": "stop", "request_id": "..."}

and receives each of a turn's events as {"type": "event", "request_id", "id", "event",
"data"}, with the ids and data of the SSE stream (so a client can re-attach from the last id
it has, here or over HTTP), and {"type": "error", "request_id"?, "status", "message",
"field"?, "retry_after"?} for a refused message. Closing the socket is a disconnect, not a
Stop: each answer's disconnect policy applies (the chat page's, "continue" by default).

The socket belongs to a logged-in user for as long as they stay so: their session is checked
on every message, when the account changes (a logout, a deactivation, a new password: the
bus's user.changed notice reaches every process), and every SESSION_CHECK_SECONDS. Once it
has ended, the socket says so ({"type": "error", "status": 401}) and closes (code 4401).
"""

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.db import close_old_connections

from conversations import bus, selectors
from conversations.accounts import local_cache
from conversations.accounts.limits import RateLimited
from conversations.exceptions import ChatError, InvalidChatRequest
from conversations.http import SANE_REQUEST_ID, as_chat_error, release_connections
from conversations.models import Message
from conversations.turns import registry
from conversations.turns.events import TurnEvent
from conversations.turns.readers import TurnStream, follow_run
from conversations.turns.runner import keep
from conversations.turns.start import begin_turn, start_run
from conversations.web.chat_requests import chat_payload, chat_turn_starter
from conversations.web.site_api import reattach_turn
from conversations.web.socket_security import session_user_id

logger = logging.getLogger(__name__)

# The most answers one socket follows at once; the user's stream limit applies besides.
MAX_FOLLOWED = 20
# A refused handshake's close code for an anonymous client (the HTTP answer is a 403), and
# the code a socket closes with once its user is no longer logged in.
UNAUTHENTICATED = 4401
# How often an idle socket checks that its session still holds (one that expired, say); and
# how long after a notice that its user changed it looks (a logout flushes the session just
# after it announces itself).
SESSION_CHECK_SECONDS = 60.0
CHANGE_CHECK_DELAY_SECONDS = 0.5
SESSION_ENDED = "You are no longer logged in (logged out, or the account changed). Log in again."

# The sockets of each user in this process, to check when the user changes.
_sockets: dict[int, set["ChatConsumer"]] = {}


@bus.handle(local_cache.USER_CHANGED)
def _check_sockets_of(message: dict) -> None:
    for socket in list(_sockets.get(message.get("user_id"), ())):
        socket.check_session_soon(CHANGE_CHECK_DELAY_SECONDS)


class WebSocketEventEncoder:
    """A turn's events as WebSocket messages: one JSON object per event, per line."""

    content_type = "application/json"

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id

    def encode(self, batch: Sequence[TurnEvent]) -> bytes:
        return b"\n".join(
            orjson.dumps(
                {
                    "type": "event",
                    "request_id": self.request_id,
                    "id": e.id,
                    "event": e.name,
                    "data": e.data,
                }
            )
            for e in batch
        )

    def keepalive(self) -> bytes:
        return b""  # the WebSocket keeps itself alive (daphne pings)


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """One user's socket: starts, follows and stops their turns."""

    # No channel layer of its own: what reaches a socket from other processes comes through
    # the bus (conversations.bus). channels would otherwise give each socket a channel and a
    # receive loop on the layer, and a socket would die with the first Redis failure.
    channel_layer_alias = "none: the chat socket listens on no channel layer"

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        self.following: dict[str, Any] = {}  # request ID -> the task sending its events
        self._checks: set[asyncio.Task] = set()
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=UNAUTHENTICATED)
            return
        self.session_key = self.scope["session"].session_key
        _sockets.setdefault(self.user.pk, set()).add(self)
        self._checks.add(keep(asyncio.create_task(self._check_every(SESSION_CHECK_SECONDS))))
        await self.accept()

    async def disconnect(self, code: int) -> None:
        # Leaving is not a Stop: each followed answer loses a reader, and its policy applies.
        for task in [*self.following.values(), *self._checks]:
            task.cancel()
        if self.user is not None and self.user.is_authenticated:
            mine = _sockets.get(self.user.pk, set())
            mine.discard(self)
            if not mine:
                _sockets.pop(self.user.pk, None)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:  # a binary frame: this socket speaks JSON text
            await self._refuse(
                InvalidChatRequest("Send each message as a JSON text frame, not binary."), ""
            )
            return
        await super().receive(text_data=text_data)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not await self._session_holds():
            return
        request_id = ""
        try:
            if not isinstance(content, dict):
                raise InvalidChatRequest("Each message must be a JSON object.")
            kind = content.get("type")
            request_id = self._request_id(content, required=kind in ("attach", "stop"))
            if kind in ("send", "regenerate", "edit"):
                await self._start(content, kind, request_id)
            elif kind == "attach":
                await self._attach(content, request_id)
            elif kind == "stop":
                await self._stop(request_id)
            else:
                raise InvalidChatRequest(
                    "type must be send, regenerate, edit, attach or stop.", field="type"
                )
        except ChatError as exc:
            await self._refuse(exc, request_id)
        except Exception as exc:
            await self._refuse(as_chat_error(exc, "/ws/chat/", request_id), request_id)
        finally:
            await release_connections()

    # --- the user's session ---------------------------------------------------------------

    async def _session_holds(self) -> bool:
        """Check that the socket's user is still logged in; if not, say so and close."""
        user_id = await database_sync_to_async(session_user_id)(self.session_key)
        if user_id == self.user.pk:
            return True
        await self._refuse(ChatError(SESSION_ENDED), "", status=401)
        await self.close(code=UNAUTHENTICATED)
        return False

    def check_session_soon(self, delay: float) -> None:
        """Check the session after `delay` seconds (its user changed somewhere)."""
        task = keep(asyncio.create_task(self._check_after(delay)))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._session_holds()

    async def _check_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            if not await self._session_holds():
                return

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return orjson.loads(text_data)
        except orjson.JSONDecodeError:
            return None  # refused as not an object, with a message the client can read

    # --- the messages -----------------------------------------------------------------

    async def _start(self, content: dict, action: str, request_id: str) -> None:
        payload = chat_payload({**content, "action": action})
        self._check_room(request_id)
        start, ask, need = chat_turn_starter(self.user, request_id, **payload)
        turn, admission = await begin_turn(self.user, start, ask=ask, need=need)
        run = await start_run(turn, admission, surface="chat")
        encoder = WebSocketEventEncoder(request_id)
        self._follow(
            request_id,
            follow_run(run, encoder, keepalive_seconds=settings.SSE_KEEPALIVE_SECONDS),
        )

    async def _attach(self, content: dict, request_id: str) -> None:
        after = content.get("last_event_id", 0)
        if after is None:
            after = 0
        if type(after) is not int or after < 0:
            raise InvalidChatRequest(
                "last_event_id must be the id of an event, a whole number.",
                field="last_event_id",
            )
        self._check_room(request_id)
        stream = await reattach_turn(
            self.user, request_id, after, WebSocketEventEncoder(request_id)
        )
        if stream is None:  # nothing follows the last event the client has
            await self.send_json({"type": "caught_up", "request_id": request_id})
            return
        self._follow(request_id, stream)

    async def _stop(self, request_id: str) -> None:
        answer = await sync_to_async(_answer_for)(self.user, request_id)
        if answer.status == Message.Status.STREAMING:
            await registry.request_stop(user_id=self.user.pk, request_id=request_id)
        # The answer's final event (`done`, status stopped) reaches every reader, this one too.

    # --- following ----------------------------------------------------------------------

    def _check_room(self, request_id: str) -> None:
        if request_id in self.following:
            raise InvalidChatRequest("This socket already follows that answer.", field="request_id")
        if len(self.following) >= MAX_FOLLOWED:
            raise InvalidChatRequest(
                f"One socket follows at most {MAX_FOLLOWED} answers at once.", field="type"
            )

    def _follow(self, request_id: str, stream: TurnStream) -> None:
        self.following[request_id] = keep(
            asyncio.create_task(self._send_events(request_id, stream))
        )

    async def _send_events(self, request_id: str, stream: TurnStream) -> None:
        try:
            async for chunk in stream:
                for line in chunk.splitlines():
                    await self.send(text_data=line.decode())
        finally:
            stream.close()
            self.following.pop(request_id, None)

    # --- helpers ------------------------------------------------------------------------

    def _request_id(self, content: dict, *, required: bool) -> str:
        given = content.get("request_id")
        if given is None and not required:
            return uuid.uuid4().hex
        if not isinstance(given, str) or not SANE_REQUEST_ID.fullmatch(given):
            raise InvalidChatRequest(
                "request_id must be 8 to 128 letters, digits, or . _ : -", field="request_id"
            )
        return given

    async def _refuse(self, exc: ChatError, request_id: str, *, status: int | None = None) -> None:
        message: dict[str, Any] = {
            "type": "error",
            "status": status or exc.status,
            "message": exc.message,
        }
        if request_id:
            message["request_id"] = request_id
        if exc.field:
            message["field"] = exc.field
        if isinstance(exc, RateLimited):
            message["retry_after"] = exc.retry_after
        elif "Retry-After" in exc.headers:
            message["retry_after"] = int(exc.headers["Retry-After"])
        await self.send_json(message)


def _answer_for(user, request_id: str) -> Message:
    """The user's answer for `request_id`; TurnNotFound (a 404) for anyone else's."""
    close_old_connections()
    return selectors.answer_for_request(user=user, request_id=request_id)
