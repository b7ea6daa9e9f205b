"""System checks that catch model misconfiguration at start-up, not at the first chat."""

from django.core import checks
from django.core.exceptions import ImproperlyConfigured


@checks.register()
def check_llm_endpoints(app_configs, **kwargs) -> list[checks.CheckMessage]:
    from conversations import providers

    try:
        endpoints = providers.endpoints()
        default = providers.default_model_key()
        providers.get_model(default)
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="conversations.E001")]
    except Exception as exc:
        return [checks.Error(f"LLM_DEFAULT_MODEL: {exc}", id="conversations.E002")]
    return [
        checks.Warning(
            f"Endpoint {endpoint.name!r} reads its API key from {endpoint.api_key_env}, "
            "which is not set; its models will fail.",
            hint=f"Set {endpoint.api_key_env} in the environment.",
            id="conversations.W001",
        )
        for endpoint in endpoints
        if endpoint.api_key_env and not endpoint.api_key
    ]
