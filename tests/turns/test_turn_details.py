"""The parts of a turn's details that need no server: the retry policy of the model client,
a model's system prompt in the endpoints file, and how long the model thought, through the
accumulator, the save and the checkpoint."""

import dataclasses

import httpx2
import pytest
from django.core.exceptions import ImproperlyConfigured
from openai._models import FinalRequestOptions

from conversations import services
from conversations.models import Message
from conversations.providers.client import (
    MAX_HIDDEN_RETRY_SECONDS,
    ChatModelClient,
    ModelChunk,
)
from conversations.providers.config import Endpoint, ModelOption, load_endpoints_file
from conversations.records import FinishedTurn
from conversations.templatetags.turn_format import thought_for
from conversations.turns.runner import TurnAccumulator
from tests.test_services import finished, start


@pytest.fixture
def sdk():
    endpoint = Endpoint("dev", "http://127.0.0.1:9/v1", "", (), 1.0, 1.0, max_retries=3)
    return ChatModelClient(endpoint)._sdk


def upstream(status: int, **headers: str) -> httpx2.Response:
    return httpx2.Response(status, headers=headers)


# --- the retry policy -------------------------------------------------------------------


def test_a_rate_limit_is_never_retried(sdk):
    assert not sdk._should_retry(upstream(429))
    assert not sdk._should_retry(upstream(429, **{"retry-after": "0.1"}))


def test_a_5xx_is_retried_unless_it_asks_for_a_long_wait(sdk):
    assert sdk._should_retry(upstream(500))
    assert sdk._should_retry(upstream(503, **{"retry-after": "1"}))
    assert not sdk._should_retry(upstream(503, **{"retry-after": "7"}))
    assert not sdk._should_retry(upstream(502, **{"retry-after-ms": "2500"}))


def test_no_retry_waits_longer_than_the_cap(sdk):
    options = FinalRequestOptions(method="post", url="/chat/completions")
    # The SDK's backoff grows to 8 s by the third retry; the cap holds whatever it asks.
    for remaining in (3, 2, 1):
        assert sdk._calculate_retry_timeout(remaining, options) <= MAX_HIDDEN_RETRY_SECONDS


# --- the system prompt in the endpoints file ----------------------------------------------


def write_endpoints(tmp_path, model_lines: str):
    path = tmp_path / "endpoints.toml"
    path.write_text(
        f"""
[[endpoints]]
name = "moonshot"
base_url = "https://api.moonshot.ai/v1"

[[endpoints.models]]
id = "kimi"
{model_lines}

[[endpoints.models]]
id = "plain"
""",
        encoding="utf-8",
    )
    return path


def load(path):
    return load_endpoints_file(path, connect_timeout=1, read_timeout=1, max_retries=0)


def test_a_model_may_have_a_system_prompt(tmp_path):
    [endpoint] = load(write_endpoints(tmp_path, 'system_prompt = "You are Kimi."'))
    kimi, plain = endpoint.models

    assert kimi.system_prompt == "You are Kimi."
    assert plain.system_prompt == ""


def test_a_system_prompt_that_is_not_text_is_refused(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="system_prompt"):
        load(write_endpoints(tmp_path, "system_prompt = 3"))


def test_the_system_prompt_goes_first_and_only_when_there_is_one():
    history = [{"role": "user", "content": "Hi"}]
    prompted = ModelOption("m/a", "m", "a", "A", system_prompt="Be brief.")

    assert prompted.with_system_prompt(history) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert ModelOption("m/b", "m", "b", "B").with_system_prompt(history) is history


# --- how long the model thought -------------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "said"),
    [
        (None, "Thinking"),
        (0, "Thought for less than a second"),
        (499, "Thought for less than a second"),
        (500, "Thought for 1 s"),
        (12_300, "Thought for 12 s"),
        (60_000, "Thought for 1 min"),
        (125_000, "Thought for 2 min 5 s"),
    ],
)
def test_thought_for_says_it_in_whole_seconds(ms, said):
    assert thought_for(ms) == said


def test_the_accumulator_times_the_thinking_to_the_first_text():
    accumulator = TurnAccumulator()
    assert accumulator.reasoning_ms() is None

    accumulator.add(ModelChunk(reasoning="Hmm"))
    accumulator.first_reasoning_at -= 2.5  # as if it began 2.5 s ago
    accumulator.add(ModelChunk(reasoning=" more"))
    accumulator.add(ModelChunk(content="Answer"))
    thought = accumulator.reasoning_ms()
    accumulator.add(ModelChunk(content=" goes on"))

    assert 2500 <= thought < 2500 + 1000
    assert accumulator.reasoning_ms() == thought  # the text that follows is not thinking


def test_an_answer_without_text_thought_until_it_ended():
    accumulator = TurnAccumulator()
    accumulator.add(ModelChunk(reasoning="Hmm"))
    accumulator.first_reasoning_at -= 1.0

    assert accumulator.reasoning_ms() >= 1000


def start_turn(user, request_id: str):
    return start(user, request_id, model_key="dev/dev-reasoner", content="Why is the sky blue?")


def finished_turn(turn, **changes) -> FinishedTurn:
    return finished(turn, reasoning="Rayleigh scattering.", duration_ms=5000, **changes)


def test_the_save_and_the_checkpoint_keep_how_long_it_thought(alice):
    turn = start_turn(alice, "thought-save-1")

    services.turns_checkpoint(
        changed=[services.Checkpoint(turn.assistant_message_id, "", "Rayleigh", 5, 1, 1500)],
        unchanged_ids=[],
    )
    assert Message.objects.get(pk=turn.assistant_message_id).reasoning_ms == 1500

    services.save_finished_turn(finished_turn(turn, reasoning_ms=3200))
    assert Message.objects.get(pk=turn.assistant_message_id).reasoning_ms == 3200


def test_a_spooled_turn_from_before_the_field_still_loads(alice):
    turn = start_turn(alice, "thought-save-2")
    older = dataclasses.asdict(finished_turn(turn))
    del older["reasoning_ms"]

    assert FinishedTurn(**older).reasoning_ms is None
