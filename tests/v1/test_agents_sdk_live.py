"""The OpenAI Agents SDK against /v1, over real HTTP, configured as its users configure it.

Its default model provider reads a "/" in a model name as its own provider prefix, so
"dev/dev-chat" fails in the SDK itself ("Unknown prefix: dev") before any request is sent.
chatsite also answers a model by its upstream id alone ("dev-chat") where one endpoint
serves it, and saves the answer under the model's own id.
"""

import pytest
from agents import Agent, RunConfig, Runner
from agents.models.multi_provider import MultiProvider
from openai import AsyncOpenAI

from conversations.models import Message

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("use_responses", [False, True], ids=["chat-completions", "responses"])
def test_an_agent_runs_on_a_model_named_by_its_upstream_id(
    site, alice, make_api_key, use_responses
):
    client = AsyncOpenAI(base_url=f"{site.url}/v1", api_key=make_api_key(alice), max_retries=0)
    provider = MultiProvider(openai_client=client, openai_use_responses=use_responses)
    agent = Agent(name="Echo", instructions="Repeat the user.", model="dev-chat")

    result = Runner.run_sync(
        agent,
        "[[devllm echo]] Agents welcome",
        # No tracing: it would export to OpenAI's servers.
        run_config=RunConfig(model_provider=provider, tracing_disabled=True),
    )

    assert result.final_output == "Agents welcome"
    answer = Message.objects.get(user=alice, is_answer=True)
    assert (answer.status, answer.model, answer.content) == (
        "completed",
        "dev/dev-chat",
        "Agents welcome",
    )
