"""Seed example 1: one LLM call from Python, waited for.

Sends an ``agent_action`` to the orchestrator and prints the model's answer.
Needs a running orchestrator with an LLM worker (deepseek, groq or gemini).

Example:
    elastic serve &
    elastic worker --type deepseek &
    python examples/simple_call.py --server http://127.0.0.1:5000 \\
        --prompt "Generate business ideas"
"""

from __future__ import annotations

import argparse
import sys

from elastic.client import D8DistributedClient
from elastic.errors import ElasticError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:5000",
                        help="the orchestrator's URL (default: %(default)s)")
    parser.add_argument("--prompt", default="Generate business ideas",
                        help="what to ask (default: %(default)r)")
    parser.add_argument("--model", default=None,
                        help="the model, e.g. llama-3.3-70b (default: the worker's own)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for the answer (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the example; 0 on success, 1 when the call failed."""
    args = parse_args(argv)
    client = D8DistributedClient(args.server)
    try:
        result = client.execute_agent_action(
            messages=[{"role": "user", "content": args.prompt}],
            model=args.model,
            timeout=args.timeout,
        )
    except ElasticError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(result["output"])
    where = "locally" if result["ran"] == "local" else "on the orchestrator"
    print(f"-- ran {where}, model {result.get('model')}, "
          f"{result.get('tokens_used')} tokens", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
