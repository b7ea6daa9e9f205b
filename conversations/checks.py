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
def check_model_connections(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Every answer a process admits holds a connection to its model: with fewer
    connections than answers, the rest would wait, silently, for one to come free."""
    from django.conf import settings

    running, connections = settings.MAX_RUNNING_TURNS, settings.LLM_MAX_CONNECTIONS
    if running and connections >= running:
        return []
    admitted = f"{running}" if running else "any number of"
    return [
        checks.Warning(
            f"LLM_MAX_CONNECTIONS ({connections}) is below MAX_RUNNING_TURNS ({admitted}): "
            "answers admitted beyond it wait for a connection to their model, and may fail "
            "their first-token deadline.",
            hint="Raise LLM_MAX_CONNECTIONS to MAX_RUNNING_TURNS, or lower MAX_RUNNING_TURNS.",
            id="conversations.W002",
        )
    ]


@checks.register()
def check_post_stream_hooks(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Every POST_STREAM_HOOKS path must import: a typo should stop a deploy, not go unseen."""
    from django.conf import settings

    from conversations.turns.hooks import hook_import_errors

    return [
        checks.Error(
            message,
            hint="Fix or remove the path; turns are saved either way.",
            id="conversations.E003",
        )
        for message in hook_import_errors(settings.POST_STREAM_HOOKS)
    ]


@checks.register(checks.Tags.compatibility, deploy=True)
def check_turn_spool(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """The spool is where turns go when the database is away: it must be writable before that
    day comes, not on it."""
    import os

    from django.conf import settings

    directory = settings.TURN_SPOOL_DIR
    parent = next((p for p in [directory, *directory.parents] if p.exists()), None)
    if parent is not None and parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return []
    return [
        checks.Error(
            f"TURN_SPOOL_DIR {str(directory)!r} cannot be created or written: turns that end "
            "while the database is unreachable could not be kept.",
            hint="Point TURN_SPOOL_DIR at a writable directory on a persistent disk.",
            id="conversations.E004",
        )
    ]
