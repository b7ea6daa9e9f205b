"""The site's own chat message, as the chat page, the site API and the WebSocket send it:
{"message", "model", "conversation", "action", "message_id"}; what it asks for, checked; the
prompt save that starts its turn; and, for a new conversation, what to ask the model
meanwhile."""

from collections.abc import Callable
from typing import NamedTuple

from django.contrib.auth.models import AbstractBaseUser

from conversations import providers, services
from conversations.accounts.limits import TokenNeed
from conversations.exceptions import InvalidChatRequest
from conversations.records import StartedTurn
from conversations.turns.start import ModelAsk
from conversations.turns.token_estimate import estimate_prompt_tokens

ACTIONS = ("send", "regenerate", "edit")


def chat_payload(data: dict, *, url_conversation: int | None = None) -> dict:
    """Read {"message", "model", "conversation", "action", "message_id"} from a client's
    JSON object, refusing malformed input. `action` is "send" (the default), "regenerate"
    an answer, or "edit" a question: a new version of it. `message_id` names that answer or
    question (without it, the last), or for "send" the last message the client shows; a
    message no longer shown gets a 409, so a stale page never acts on another branch. A
    conversation named in the URL wins over the body's."""
    action = data.get("action", "send")
    if action not in ACTIONS:
        raise InvalidChatRequest(f"action must be one of {', '.join(ACTIONS)}.", field="action")
    conversation = url_conversation or data.get("conversation")
    if conversation is not None and (type(conversation) is not int or conversation < 1):
        raise InvalidChatRequest("conversation must be a conversation ID.", field="conversation")
    if action != "send" and conversation is None:
        raise InvalidChatRequest(f"To {action}, name the conversation.", field="conversation")
    # The message a regenerate or edit acts on, as the client saw it: checked when saving.
    message_id = message_id_of(data, required=False)
    model = data.get("model") or providers.default_model_key()
    if not isinstance(model, str):
        raise InvalidChatRequest("model must be a model key.", field="model")
    # Checked here as well as when saving, so that a bad message costs no rate-limit request.
    message = "" if action == "regenerate" else services.clean_message(data.get("message"))
    providers.get_model(model)
    return {
        "message": message,
        "model": model,
        "conversation": conversation,
        "action": action,
        "message_id": message_id,
    }


def message_id_of(data: dict, *, required: bool) -> int | None:
    """The client's "message_id": a message ID, or None when it is absent and may be."""
    message_id = data.get("message_id")
    if message_id is None and not required:
        return None
    if type(message_id) is not int or message_id < 1:
        raise InvalidChatRequest("message_id must be a message ID.", field="message_id")
    return message_id


class ChatTurnStart(NamedTuple):
    """A checked chat message's turn, ready for turn_starts.begin_turn: its prompt save, what
    to ask the model meanwhile when that is known before the save, and what it may cost a
    daily token quota (the new message, and the conversation's history so far)."""

    start: Callable[[], StartedTurn]
    ask: ModelAsk | None
    need: TokenNeed


def chat_turn_starter(
    user: AbstractBaseUser,
    request_id: str,
    *,
    message: str,
    model: str,
    conversation: int | None,
    action: str = "send",
    message_id: int | None = None,
) -> ChatTurnStart:
    """The prompt save a checked chat message asks for and, for the first message of a new
    conversation, the model's question: that message is the whole history (the history the
    save reads back is that one message), after the model's system prompt. A conversation
    that goes on has its history read in the save, so the model is asked after it."""
    common = {"user": user, "model_key": model, "request_id": request_id}
    # As the save will build it (services._start_answer): the system prompt first.
    question = providers.get_model(model).with_system_prompt(
        [{"role": "user", "content": message}] if message else []
    )
    need = TokenNeed(prompt=estimate_prompt_tokens(question), context_of=conversation)
    if action == "regenerate":
        return ChatTurnStart(
            lambda: services.turn_regenerate(
                conversation_id=conversation, message_id=message_id, **common
            ),
            None,
            need,
        )
    if action == "edit":
        return ChatTurnStart(
            lambda: services.turn_edit(
                conversation_id=conversation, content=message, message_id=message_id, **common
            ),
            None,
            need,
        )
    ask = ModelAsk(model, question, request_id) if conversation is None else None
    return ChatTurnStart(
        lambda: services.turn_start(
            conversation_id=conversation, content=message, message_id=message_id, **common
        ),
        ask,
        need,
    )
