"""Typed results: one frozen dataclass per task type, each convertible to the seed's dict.

``TaskResult`` holds what every result has (the task id, where it ran and why, the
dict the executor reported); its subclasses add the fields of their task type
(see the interface's task types). ``to_dict()`` gives the seed's dict: the reported
fields plus ``ran``, ``reason`` and ``task_id``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Ran = Literal["orchestrator", "local"]


@dataclass(frozen=True, kw_only=True)
class TaskResult:
    """A finished task's result.

    Attributes:
        task_id: the orchestrator's id; None when it ran in this process.
        task_type: ``agent_action``, ``evolution_crossover``, ...
        success: what the executor reported.
        ran: ``"orchestrator"`` or ``"local"`` (the client's local fallback).
        reason: why it ran locally; None when it ran on the orchestrator.
        reported: the whole result as the executor reported it.
    """

    task_id: str | None
    task_type: str
    success: bool = True
    ran: Ran = "orchestrator"
    reason: str | None = None
    reported: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The seed's dict: the reported fields plus ``ran``, ``reason`` and ``task_id``."""
        return {**self.reported, "ran": self.ran, "reason": self.reason, "task_id": self.task_id}


@dataclass(frozen=True, kw_only=True)
class AgentActionResult(TaskResult):
    """An ``agent_action``: the model's text."""

    output: str = ""
    tokens_used: int | None = None
    model: str | None = None
    provider: str | None = None


@dataclass(frozen=True, kw_only=True)
class CodeGenerationResult(AgentActionResult):
    """A ``code_generation``: the answer and the code block extracted from it."""

    code: str | None = None


@dataclass(frozen=True, kw_only=True)
class EvolutionResult(TaskResult):
    """An ``evolution_crossover`` or ``evolution_mutation``: the new genome."""

    genome: dict[str, Any] = field(default_factory=dict)
    method: str | None = None
    mode_used: str | None = None
    tokens_used: int | None = None


@dataclass(frozen=True, kw_only=True)
class SimulationResult(TaskResult):
    """A ``simulation`` (specs/particles.md): final energies, momentum and metrics."""

    algorithm: str | None = None
    kinetic_energy: float | None = None
    potential_energy: float | None = None
    total_energy: float | None = None
    initial_total_energy: float | None = None
    energy_drift: float | None = None
    momentum: list[float] = field(default_factory=list)
    particles_processed: int | None = None
    steps_completed: int | None = None
    pair_evaluations: int | None = None
    execution_time_s: float | None = None
    memory_peak_mb: float | None = None


RESULT_TYPES: dict[str, type[TaskResult]] = {
    "agent_action": AgentActionResult,
    "code_generation": CodeGenerationResult,
    "evolution_crossover": EvolutionResult,
    "evolution_mutation": EvolutionResult,
    "simulation": SimulationResult,
}
COMMON_FIELDS = frozenset(field.name for field in dataclasses.fields(TaskResult))


def result_of(task_type: str, task_id: str | None, reported: Mapping[str, Any], *,
              ran: Ran = "orchestrator", reason: str | None = None) -> TaskResult:
    """The typed result of ``task_type`` built from the dict its executor reported."""
    result_type = RESULT_TYPES.get(task_type, TaskResult)
    own = {f.name: reported[f.name] for f in dataclasses.fields(result_type)
           if f.name not in COMMON_FIELDS and reported.get(f.name) is not None}
    return result_type(task_id=task_id, task_type=task_type,
                       success=reported.get("success", True) is not False, ran=ran,
                       reason=reason, reported=dict(reported), **own)
