"""Hold the devllm management commands."""
