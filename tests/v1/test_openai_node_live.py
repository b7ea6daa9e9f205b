"""A multi-turn streamed conversation through the official openai npm package, over real HTTP.

tests/node/openai_multiturn.mjs is the script a JavaScript user would write: it sends the
whole growing history on every call and streams each answer. Its three turns must continue
one saved API conversation.
"""

import json
import os
import subprocess

import pytest

from conversations.models import Conversation, Message
from tests.servers import ROOT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

SCRIPT = "tests/node/openai_multiturn.mjs"
# The development LLM server waits 20 ms per token, so an answer arrives spread over time.
MIN_CHUNKS_PER_TURN = 5
MIN_STREAM_SPREAD_MS = 100


def run_node_conversation(site, api_key: str) -> list[dict]:
    """Run the Node script against the site and return its turns."""
    result = subprocess.run(
        ["node", SCRIPT],
        cwd=ROOT,
        env={
            **os.environ,
            "OPENAI_BASE_URL": f"{site.url}/v1",
            "OPENAI_API_KEY": api_key,
            "MODEL": "dev/dev-chat",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, (
        f"node exited with {result.returncode}:\n{result.stderr}\nstdout: {result.stdout}"
    )
    return json.loads(result.stdout)["turns"]


def test_three_streamed_turns_sent_as_growing_history_continue_one_api_conversation(
    site, alice, make_api_key
):
    turns = run_node_conversation(site, make_api_key(alice))

    assert len(turns) == 3
    for n, turn in enumerate(turns, start=1):
        times = turn["chunk_times_ms"]
        assert turn["text"], f"turn {n} has no text"
        assert len(times) >= MIN_CHUNKS_PER_TURN, f"turn {n} arrived in {len(times)} chunks"
        assert times[-1] - times[0] > MIN_STREAM_SPREAD_MS, f"turn {n} was not streamed: {times}"
        assert turn["usage"]["completion_tokens"] > 0, f"turn {n} usage: {turn['usage']}"
        assert turn["id"].startswith("chatcmpl-"), turn["id"]

    conversations = list(Conversation.objects.filter(owner=alice, source=Conversation.Source.API))
    assert len(conversations) == 1, f"expected one API conversation, got {conversations}"
    conversation = conversations[0]
    messages = list(Message.objects.filter(conversation=conversation).order_by("pk"))
    assert [m.role for m in messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    answers = [m for m in messages if m.role == "assistant"]
    assert [a.content for a in answers] == [t["text"] for t in turns]
    assert [a.status for a in answers] == ["completed"] * 3
    request_ids = [t["id"].removeprefix("chatcmpl-") for t in turns]
    assert [a.request_id for a in answers] == request_ids
    assert len(set(request_ids)) == 3
