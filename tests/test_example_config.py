"""The example endpoints file in the repository stays loadable."""

from conversations.providers.config import load_endpoints_file
from tests.servers import ROOT


def test_example_endpoints_file_loads_every_provider():
    endpoints = load_endpoints_file(
        ROOT / "llm_endpoints.example.toml", connect_timeout=5, read_timeout=60, max_retries=1
    )
    assert [e.name for e in endpoints] == ["openai", "deepseek", "moonshot", "ollama", "vllm"]
    assert endpoints[1].read_timeout == 300
    assert endpoints[3].api_key == "not-needed"  # local servers need no key
    assert "deepseek/deepseek-reasoner" in [m.key for e in endpoints for m in e.models]
