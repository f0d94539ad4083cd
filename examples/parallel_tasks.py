"""Seed example 3: send many tasks without waiting, then wait for all of them.

The workers run the tasks in parallel while this script only submits them and
then collects the results, each wait returning as soon as its task ends.

Example:
    elastic serve & elastic worker --type deepseek &
    python examples/parallel_tasks.py --server http://127.0.0.1:5000 --count 10
    # no LLM worker? mutations run on an evolution worker:
    python examples/parallel_tasks.py --task-type evolution_mutation
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from elastic.client import D8DistributedClient
from elastic.errors import ElasticError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:5000",
                        help="the orchestrator's URL (default: %(default)s)")
    parser.add_argument("--count", type=int, default=10, help="how many tasks (default: 10)")
    parser.add_argument("--task-type", choices=["agent_action", "evolution_mutation"],
                        default="agent_action", help="default: %(default)s")
    parser.add_argument("--model", default=None, help="the LLM model (agent_action only)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for each task (default: %(default)s)")
    return parser.parse_args(argv)


def submit_all(client: D8DistributedClient, args: argparse.Namespace) -> list[str]:
    """Send ``args.count`` tasks without waiting; their ids."""
    task_ids = []
    for i in range(args.count):
        if args.task_type == "agent_action":
            result = client.execute_agent_action(
                messages=[{"role": "user", "content": f"Task {i}"}],
                model=args.model,
                wait_for_result=False,
            )
            task_ids.append(result["task_id"])
        else:
            genome = {"param1": 0.7, "param2": 120, "name": f"task-{i}"}
            task_ids.append(client.submit("evolution_mutation",
                                          {"genome": genome, "mutation_rate": 0.5}))
    return task_ids


def summary(result: dict[str, Any]) -> str:
    """One line about a task's result."""
    if "output" in result:
        return str(result["output"]).strip().replace("\n", " ")[:70]
    return str(result.get("genome"))


def main(argv: list[str] | None = None) -> int:
    """Run the example; 0 when every task completed, else 1."""
    args = parse_args(argv)
    client = D8DistributedClient(args.server)
    started = time.monotonic()
    try:
        task_ids = submit_all(client, args)
        print(f"submitted {len(task_ids)} tasks")
        results = [client._wait_for_result(task_id, timeout=args.timeout)
                   for task_id in task_ids]
    except ElasticError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    for task_id, result in zip(task_ids, results, strict=True):
        print(f"{task_id}: {summary(result)}")
    print(f"{len(results)} tasks done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
