"""System checks that catch misconfiguration at start-up, not at the first chat."""

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


@checks.register()
def check_post_stream_hooks(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Every POST_STREAM_HOOKS path must import: a typo should stop a deploy, not go unseen."""
    from django.conf import settings

    from conversations.hooks import hook_import_errors

    return [
        checks.Error(
            message,
            hint="Fix or remove the path; turns are saved either way.",
            id="conversations.E003",
        )
        for message in hook_import_errors(settings.POST_STREAM_HOOKS)
    ]
