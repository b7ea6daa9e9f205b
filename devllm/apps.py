"""Register devllm as a Django app so `manage.py devllm` is discovered."""

from django.apps import AppConfig


class DevllmConfig(AppConfig):
    """Describe the devllm app; it has no models, only a management command."""

    name = "devllm"
    verbose_name = "Development LLM server"
