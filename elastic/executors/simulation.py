"""The ``simulation`` executor: a particle simulation (specs/particles.md) through elastic.kernels.

Validation needs only numpy: it runs on the server at submit time, where the
compiled kernel may not be built.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from elastic.errors import InvalidTask
from elastic.executors.base import ExecutionContext
from elastic.kernels import KNOWN_ALGORITHMS, cost, is_checkpoint_of, kernel_for, run_simulation
from elastic.kernels.driver import CheckpointMaker
from elastic.kernels.memory import estimate_memory_mb
from elastic.kernels.params import SimulationParams, parse_simulation_params

DEFAULT_MEMORY_LIMIT_MB = 2048.0
COMPLETED_OUTPUT = "Simulación completada exitosamente"


@dataclass(frozen=True, kw_only=True)
class SimulationTask:
    """A validated simulation task: which algorithm integrates which parameters."""

    algorithm: str
    parameters: SimulationParams


class Simulation:
    """Runs ``simulation`` tasks with the python, numpy or cython kernel.

    ``memory_limit_mb`` bounds what one run may allocate (by ``estimate_memory_mb``);
    the context's ``time_limit_seconds`` bounds how long it may take (by
    ``kernels.cost``); ``chunk_seconds`` is how often a run reports progress and may
    be cancelled.
    """

    name = "simulation"

    def __init__(self, memory_limit_mb: float = DEFAULT_MEMORY_LIMIT_MB, *,
                 chunk_seconds: float = 0.2) -> None:
        self.memory_limit_mb = memory_limit_mb
        self.chunk_seconds = chunk_seconds

    def validate(self, data: Mapping[str, Any]) -> SimulationTask:
        """Check ``algorithm`` and ``parameters``; other keys of ``data`` are left alone.

        Raises:
            InvalidTask: naming ``algorithm``, ``parameters`` or ``parameters.<key>``.
        """
        if not isinstance(data, Mapping):
            raise InvalidTask(f"must be an object, got {type(data).__name__}", field="data")
        algorithm = data.get("algorithm")
        if not isinstance(algorithm, str) or algorithm not in KNOWN_ALGORITHMS:
            raise InvalidTask(f"must be one of {', '.join(KNOWN_ALGORITHMS)}, got {algorithm!r}",
                              field="algorithm")
        if "parameters" not in data:
            raise InvalidTask("is required (num_particles, num_steps, ...)", field="parameters")
        task = SimulationTask(algorithm=algorithm,
                              parameters=parse_simulation_params(data["parameters"]))
        if task.parameters.threads > 1 and algorithm != "cython":
            raise InvalidTask(f"only the cython kernel runs on more than one thread, not "
                              f"{algorithm}", field="parameters.threads")
        return task

    def _refuse_over_memory_limit(self, task: SimulationTask) -> None:
        """Raise ``InvalidTask`` if the run would need more than ``memory_limit_mb``.

        Checked where the task runs, against that worker's limit: at submit time the
        orchestrator knows no worker's memory.
        """
        params = task.parameters
        needed_mb = estimate_memory_mb(params.num_particles, task.algorithm,
                                       density=params.density, cutoff=params.cutoff,
                                       threads=params.threads)
        if needed_mb > self.memory_limit_mb:
            raise InvalidTask(
                f"{task.parameters.num_particles} particles with {task.algorithm} need about "
                f"{needed_mb:.0f} MB, over the limit of {self.memory_limit_mb:.0f} MB",
                field="parameters.num_particles")

    def run(self, task: SimulationTask, context: ExecutionContext) -> dict[str, Any]:
        """Simulate, reporting progress and checkpoints; resume from a matching checkpoint.

        Raises:
            InvalidTask: the run would need more than ``memory_limit_mb``.
            TaskCancelled: from ``context`` at the next chunk after a cancel (inside a
                step of the python kernel).
            UnavailableAlgorithm: the algorithm is not built on this machine.
        """
        self._refuse_over_memory_limit(task)
        context.check_cancelled()
        resume_from = context.resume_from
        if not is_checkpoint_of(resume_from, task.parameters, algorithm=task.algorithm):
            resume_from = None
        refuse_over_time_limit(task, context.time_limit_seconds,
                               from_step=resume_from["step"] if resume_from else 0)
        reporter = _ChunkReporter(context, num_steps=task.parameters.num_steps)
        result = run_simulation(task.parameters, algorithm=task.algorithm,
                                on_chunk=reporter.record_chunk, resume_from=resume_from,
                                chunk_seconds=self.chunk_seconds,
                                interrupt=context.check_cancelled)
        reporter.finish()
        resumed_from_step = resume_from["step"] if resume_from else 0
        return {"success": True, **result, "resumed_from_step": resumed_from_step,
                "status": "completed", "output": COMPLETED_OUTPUT, "metrics": _metrics_of(result)}


class _ChunkReporter:
    """Turns ``on_chunk`` calls into progress reports and timed checkpoints."""

    def __init__(self, context: ExecutionContext, *, num_steps: int) -> None:
        self.context = context
        self.num_steps = num_steps
        self.fraction = 0.0
        self.checkpointed_at = time.monotonic()

    def record_chunk(self, steps_done: int, make_checkpoint: CheckpointMaker) -> None:
        """Report progress; save a checkpoint when the interval has passed (not at the end)."""
        self.fraction = steps_done / self.num_steps
        self.context.report_progress(self.fraction)
        now = time.monotonic()
        is_due = now - self.checkpointed_at >= self.context.checkpoint_interval_seconds
        if is_due and steps_done < self.num_steps:
            self.context.save_checkpoint(make_checkpoint())
            self.checkpointed_at = now

    def finish(self) -> None:
        """Report 1.0 if no chunk did (a run of zero steps)."""
        if self.fraction < 1.0:
            self.context.report_progress(1.0)


def refuse_over_time_limit(task: SimulationTask, time_limit_seconds: float | None, *,
                           from_step: int = 0) -> None:
    """Raise ``InvalidTask`` naming ``num_steps`` if the run would outlast the time limit.

    The estimate is ``kernels.cost``'s model scaled by this machine's measured speed.

    Raises:
        UnavailableAlgorithm: the algorithm is not built on this machine.
    """
    if time_limit_seconds is None:
        return
    params = task.parameters
    factor = cost.measure_speed_factor(kernel_for(task.algorithm), task.algorithm)
    seconds = cost.estimate_seconds(params, task.algorithm, from_step=from_step,
                                    speed_factor=factor)
    if seconds <= time_limit_seconds:
        return
    steps_left = params.num_steps - from_step
    fitting_steps = int(steps_left * time_limit_seconds / seconds)
    raise InvalidTask(
        f"{steps_left} steps of {params.num_particles} particles with {task.algorithm} would "
        f"take about {seconds:.0f} s on this worker, over its time limit of "
        f"{time_limit_seconds:.0f} s: use at most about {fitting_steps} steps, fewer "
        "particles or a faster algorithm", field="parameters.num_steps")


def _metrics_of(result: Mapping[str, Any]) -> dict[str, Any]:
    """The seed-004 ``metrics`` block, with the numbers behind ``memory_peak``."""
    return {
        "particles_processed": result["particles_processed"],
        "steps_completed": result["steps_completed"],
        "memory_peak": f"{result['memory_peak_mb']:.1f} MB",
        "pair_evaluations": result["pair_evaluations"],
        "execution_time_s": result["execution_time_s"],
        "memory_peak_mb": result["memory_peak_mb"],
    }
