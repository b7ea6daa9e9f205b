"""Recognise an API client's history as a thread it continues, or branches.

Chat clients send the whole conversation on every call: turn 1, then turns 1-2, then 1-3.
Each message of an API conversation keeps `thread_hash`, the hash of the thread up to and
including it, as a client would send it back: the prompt's messages, and an answer once it
completed (a failed or stopped answer does not join the thread: a client retries its prompt).
A call continues the conversation that holds the longest prefix of its history, and only the
messages after that prefix are new. They follow the message that ends the prefix:

* at the thread's tip, the thread grows;
* earlier (a regenerate: the history up to a question sent again; or an edit of a later
  message), they are a new branch, and the earlier one a version, as on the chat page.

A prefix counts only if it reaches an assistant message, or is the whole history of a call
whose earlier answers all failed or stopped (a retry): so calls that merely share an opening
(a system prompt, a first question) are separate conversations. An answer that continued a prefill
(the prompt ended with an assistant message) also keeps `merged_thread_hash`, the thread
with the prefill and the answer as one assistant message, which is how many clients send
it back.

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
    """Return the thread's hash through an answer once it has ended; "" when it did not
    complete: after a failed or stopped answer the client retries the same prompt, or sends
    the partial text it kept as its own message, and either way the prompt is what it
    continues from."""
    if status != "completed":
        return ""
    return extend_hash(prompt_hash, role="assistant", content=content)


def hash_after_prefilled_answer(
    *, before_prefill: str, prefill: str, status: str, content: str
) -> str:
    """The thread's hash once an answer that continued a prefill has ended, with the prefill
    and the answer as one assistant message; "" when the answer did not complete."""
    if status != "completed":
        return ""
    return extend_hash(before_prefill, role="assistant", content=prefill + content)


def first_continuable(messages: Sequence[Mapping[str, str]]) -> int | None:
    """The position of the history's first assistant message, or None: a prefix that reaches
    it is a thread the server answered, which a call may go on with or branch."""
    return next((i for i, m in enumerate(messages) if m["role"] == "assistant"), None)
