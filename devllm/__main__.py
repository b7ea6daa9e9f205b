"""Run the development LLM server standalone: `python -m devllm --port 8001`."""

import argparse

from devllm.server import run


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m devllm", description="Serve a deterministic OpenAI-compatible LLM."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="TCP port (8001; 0 picks one)")
    parser.add_argument(
        "--delay-ms", type=float, default=30, help="pause between streamed tokens (30)"
    )
    parser.add_argument("--api-key", default=None, help="require this bearer token on /v1")
    args = parser.parse_args(argv)
    run(args.host, args.port, delay_ms=args.delay_ms, api_key=args.api_key)


if __name__ == "__main__":
    main()
