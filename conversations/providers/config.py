"""Load the configured OpenAI-compatible endpoints and the models each offers."""

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True, slots=True)
class ModelOption:
    """A model a user can pick: `key` is "<endpoint>/<upstream id>" and is what we store."""

    key: str
    endpoint: str
    upstream_id: str
    label: str
    # Sent first, as a system message, on web chats (the chat page, the site API, the
    # WebSocket); never added to /v1 calls, whose clients send their own messages.
    system_prompt: str = ""

    def with_system_prompt(self, history: list[dict[str, str]]) -> list[dict[str, str]]:
        """The messages a web chat sends this model: its system prompt first, if it has one."""
        if not self.system_prompt:
            return history
        return [{"role": "system", "content": self.system_prompt}, *history]


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    base_url: str
    api_key_env: str
    models: tuple[ModelOption, ...]
    connect_timeout: float
    read_timeout: float
    max_retries: int

    @property
    def api_key(self) -> str:
        # Local servers (Ollama, vLLM, the development server) need no key, but the SDK
        # insists on one; any placeholder will do for them.
        if not self.api_key_env:
            return "not-needed"
        return os.environ.get(self.api_key_env, "")


def development_endpoints(
    *, devllm_url: str, connect_timeout: float, read_timeout: float, max_retries: int
) -> list[Endpoint]:
    """Return the endpoint of the development LLM server, the embedded default."""
    models = (
        ModelOption("dev/dev-chat", "dev", "dev-chat", "Dev chat (development server)"),
        ModelOption("dev/dev-reasoner", "dev", "dev-reasoner", "Dev reasoner (development server)"),
    )
    return [Endpoint("dev", devllm_url, "", models, connect_timeout, read_timeout, max_retries)]


def load_endpoints_file(
    path: str | Path, *, connect_timeout: float, read_timeout: float, max_retries: int
) -> list[Endpoint]:
    """Parse a TOML file of `[[endpoints]]`, each with `[[endpoints.models]]`."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ImproperlyConfigured(f"LLM_ENDPOINTS_FILE {path}: {exc}") from exc
    endpoints = []
    for raw in data.get("endpoints", []):
        name = _required(raw, "name", path)
        if "/" in name:
            raise ImproperlyConfigured(f"{path}: endpoint name {name!r} must not contain '/'.")
        models = tuple(
            ModelOption(
                key=f"{name}/{_required(m, 'id', path)}",
                endpoint=name,
                upstream_id=m["id"],
                label=m.get("label", m["id"]),
                system_prompt=_optional_text(m, "system_prompt", path),
            )
            for m in raw.get("models", [])
        )
        if not models:
            raise ImproperlyConfigured(f"{path}: endpoint {name!r} lists no models.")
        endpoints.append(
            Endpoint(
                name=name,
                base_url=_required(raw, "base_url", path),
                api_key_env=raw.get("api_key_env", ""),
                models=models,
                connect_timeout=float(raw.get("connect_timeout", connect_timeout)),
                read_timeout=float(raw.get("read_timeout", read_timeout)),
                max_retries=int(raw.get("max_retries", max_retries)),
            )
        )
    if not endpoints:
        raise ImproperlyConfigured(f"{path}: no [[endpoints]] configured.")
    return endpoints


def _optional_text(table: dict, key: str, path: str | Path) -> str:
    value = table.get(key, "")
    if not isinstance(value, str):
        raise ImproperlyConfigured(f"{path}: {key!r} must be a string.")
    return value


def _required(table: dict, key: str, path: str | Path) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ImproperlyConfigured(f"{path}: every entry needs a non-empty {key!r}.")
    return value
