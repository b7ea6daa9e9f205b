"""Recognise an API client's growing history as one thread.

Chat clients send the whole conversation on every call: turn 1, then turns 1-2, then 1-3.
Each API conversation keeps `thread_hash`, the hash of the messages a client would send back
to go on with it: the prompt it was asked and, when the answer completed, that answer. A call
whose messages begin with exactly those messages continues the conversation, and only the
messages after that prefix are new. Anything else (an edited or shortened history, another
model's answer) starts a new conversation.

The hash of a prefix chains the hash of the prefix before it, so every prefix of a prompt is
hashed in one pass over its messages.
"""

import hashlib
from collections.abc import Mapping, Sequence

import orjson


def extend_hash(previous: str, *, role: str, content: str) -> str:
    """Return the hash of a thread whose hash was `previous`, with one more message."""
    return hashlib.sha256(orjson.dumps([previous, role, content])).hexdigest()


def prefix_hashes(messages: Sequence[Mapping[str, str]]) -> list[str]:
    """Return the hash of every prefix of `messages`: item i covers messages[0] to [i]."""
    hashes: list[str] = []
    digest = ""
    for message in messages:
        digest = extend_hash(digest, role=message["role"], content=message["content"])
        hashes.append(digest)
    return hashes


def hash_after_answer(*, prompt_hash: str, status: str, content: str) -> str:
    """Return a thread's hash once its answer has ended.

    Only a completed answer joins the thread: after a failed or stopped answer the client
    retries the same prompt, or sends the partial text it kept, and either way the prompt is
    what it continues from.
    """
    if status != "completed":
        return prompt_hash
    return extend_hash(prompt_hash, role="assistant", content=content)
