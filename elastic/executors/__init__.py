"""The executor registry: task type -> the executor that runs it.

Each executor validates its task's ``data`` and runs it (see ``base.Executor``).
Submitting validates through here too, so a bad task is refused before it is queued.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from elastic.errors import UnknownTaskType
from elastic.executors.base import ExecutionContext, Executor
from elastic.executors.evolution import Crossover, Mutation
from elastic.executors.llm_tasks import AgentAction, CodeGeneration
from elastic.executors.noop import Noop
from elastic.executors.simulation import Simulation
from elastic.tasks import TASK_TYPES

EXECUTORS: dict[str, Executor] = {
    "agent_action": AgentAction(),
    "code_generation": CodeGeneration(),
    "evolution_crossover": Crossover(),
    "evolution_mutation": Mutation(),
    "simulation": Simulation(),
    "noop": Noop(),
}
assert set(EXECUTORS) == set(TASK_TYPES), "every task type needs exactly one executor"


def get_executor(task_type: str) -> Executor:
    """The executor for ``task_type``.

    Raises:
        UnknownTaskType: naming the type and the known ones.
    """
    try:
        return EXECUTORS[task_type]
    except (KeyError, TypeError):
        known = ", ".join(sorted(EXECUTORS))
        raise UnknownTaskType(f"unknown task type {task_type!r} (known: {known})",
                              field="type") from None


def validate_task_data(task_type: str, data: Mapping[str, Any]) -> Any:
    """Validate ``data`` for ``task_type``; raises ``InvalidTask`` naming the field."""
    return get_executor(task_type).validate(data)


__all__ = ["EXECUTORS", "ExecutionContext", "Executor", "get_executor", "validate_task_data"]
