"""The configured model endpoints, and one shared client per endpoint."""

from functools import cache

from django.conf import settings

from conversations.exceptions import UnknownModel
from conversations.providers.client import ChatModelClient, ModelChunk, Usage
from conversations.providers.config import (
    Endpoint,
    ModelOption,
    development_endpoints,
    load_endpoints_file,
)

__all__ = ["ChatModelClient", "Endpoint", "ModelChunk", "ModelOption", "Usage"]


@cache
def endpoints() -> tuple[Endpoint, ...]:
    """Return the configured endpoints: the LLM_ENDPOINTS_FILE's, or the development server."""
    timeouts = {
        "connect_timeout": settings.LLM_CONNECT_TIMEOUT,
        "read_timeout": settings.LLM_READ_TIMEOUT,
        "max_retries": settings.LLM_MAX_RETRIES,
    }
    if settings.LLM_ENDPOINTS_FILE:
        return tuple(load_endpoints_file(settings.LLM_ENDPOINTS_FILE, **timeouts))
    return tuple(development_endpoints(devllm_url=settings.DEVLLM_URL, **timeouts))


def model_options() -> list[ModelOption]:
    """Return every model a user can pick, in configuration order."""
    return [model for endpoint in endpoints() for model in endpoint.models]


def default_model_key() -> str:
    return settings.LLM_DEFAULT_MODEL or model_options()[0].key


def get_model(key: str) -> ModelOption:
    """Return the model with this key, or with this upstream id when only one endpoint
    serves that id; raise UnknownModel otherwise.

    Keys are "<endpoint>/<upstream id>", as OpenRouter's are, and that is what is listed and
    stored. Some clients read a "/" in a model id as their own provider prefix (the OpenAI
    Agents SDK: "Unknown prefix: dev"), so a model is also reachable by its upstream id
    alone ("dev-chat"), which such clients pass through as it is."""
    options = model_options()
    for model in options:
        if model.key == key:
            return model
    serving = [model for model in options if model.upstream_id == key]
    if len(serving) == 1:
        return serving[0]
    if serving:
        keys = ", ".join(model.key for model in serving)
        raise UnknownModel(
            f"Model {key!r} is served by several endpoints; name one: {keys}.", field="model"
        )
    raise UnknownModel(f"Unknown model {key!r}.", field="model")


@cache
def client_for(endpoint_name: str) -> ChatModelClient:
    """Return the endpoint's shared client (one per process, reused by every request)."""
    endpoint = next(e for e in endpoints() if e.name == endpoint_name)
    return ChatModelClient(endpoint, max_connections=settings.LLM_MAX_CONNECTIONS)


def create_clients() -> list[str]:
    """Create every endpoint's shared client now, ready for the first request, and return the
    endpoints' names. A server process calls it as it starts (chatsite.asgi): set up on first
    use, a client made the first answer after a start wait."""
    names = []
    for endpoint in endpoints():
        client_for(endpoint.name).prepare()
        names.append(endpoint.name)
    return names
