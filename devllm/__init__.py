"""Serve a deterministic, OpenAI-compatible development LLM over HTTP."""
