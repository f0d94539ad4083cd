"""The ``noop`` executor: does no work and answers at once.

It is what ``elastic bench`` pushes through the orchestrator, so that what is
measured is dispatch alone (submit, lease, report), never the work. ``data`` may
hold anything (up to the body limit); it is echoed back as ``echo`` when it has a
``echo`` key, so a test can tell results apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from elastic.executors.base import ExecutionContext


class Noop:
    """noop: an empty result, as fast as a task can be."""

    name = "noop"

    def validate(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """Any data object is valid."""
        return data

    def run(self, params: Mapping[str, Any], context: ExecutionContext) -> dict[str, Any]:
        """Return at once (with ``echo`` when the data has one)."""
        return {"echo": params["echo"]} if "echo" in params else {}
