"""The chunk driver every kernel shares: initial state, chunks, checkpoints, result.

A run integrates in chunks of about ``chunk_seconds`` of work (never less than one
step), cut short where something is due (a sample, a snapshot, a thermostat step).
After a chunk it calls ``on_chunk(steps_done, make_checkpoint)``; ``make_checkpoint()``
builds the JSON-ready checkpoint only when the caller wants one (compressing the
state of 200,000 particles takes a tenth of a second).

A checkpoint holds positions and velocities as compact exact arrays (``codec``), the
count of pairs evaluated so far and the observations so far, so a resumed run ends
bit-identical to one that never stopped, series and pictures included. Checkpoints of
the earlier format (plain JSON lists, no count, no observations) are still read; their
``pair_evaluations`` then counts from the resume on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from elastic.errors import InvalidTask
from elastic.kernels.codec import decode_array, encode_array
from elastic.kernels.memory import MemoryPeak
from elastic.kernels.observables import (
    Observations,
    kinetic_energy,
    steps_to_next_event,
    total_momentum,
)
from elastic.kernels.params import SimulationParams

CheckpointMaker = Callable[[], dict[str, Any]]
ChunkCallback = Callable[[int, CheckpointMaker], None]


def build_initial_state(params: SimulationParams) -> tuple[np.ndarray, np.ndarray]:
    """Positions on a square lattice and seeded velocities at ``temperature``."""
    count = params.num_particles
    side = math.isqrt(count - 1) + 1
    spacing = params.box_length / side
    index = np.arange(count)
    positions = np.empty((count, 2))
    positions[:, 0] = (index % side + 0.5) * spacing
    positions[:, 1] = (index // side + 0.5) * spacing
    velocities = np.random.default_rng(params.seed).standard_normal((count, 2))
    velocities -= [math.fsum(column) / count for column in velocities.T.tolist()]
    raw_kinetic = kinetic_energy(velocities)
    if raw_kinetic > 0:
        velocities *= math.sqrt(count * params.temperature / raw_kinetic)
    return positions, velocities


@dataclass(kw_only=True)
class _Run:
    """The state of one run between chunks."""

    params: SimulationParams
    algorithm: str
    kernel: ModuleType
    workspace: Any
    positions: np.ndarray
    velocities: np.ndarray
    forces: np.ndarray
    potential_energy: float
    initial_total_energy: float
    step: int
    earlier_seconds: float
    observations: Observations

    def to_checkpoint(self, *, execution_time_s: float) -> dict[str, Any]:
        """A JSON-ready state from which ``run_simulation`` can go on exactly."""
        return {
            "algorithm": self.algorithm,
            "parameters": self.params.as_dict(),
            "step": self.step,
            "positions": encode_array(self.positions),
            "velocities": encode_array(self.velocities),
            "initial_total_energy": self.initial_total_energy,
            "execution_time_s": execution_time_s,
            "pair_evaluations": self.workspace.pair_evaluations,
            "observations": self.observations.to_checkpoint(),
        }

    def record_observations(self) -> None:
        """Take the samples and snapshots due at this step, then apply the thermostat."""
        self.observations.record(self.params, step=self.step, positions=self.positions,
                                 velocities=self.velocities,
                                 potential_energy=self.potential_energy,
                                 virial=self.workspace.virial)
        apply_thermostat(self.params, self.step, self.velocities)


def apply_thermostat(params: SimulationParams, step: int, velocities: np.ndarray) -> None:
    """Velocity rescaling: at every ``thermostat_every``-th step (not step 0), set T exactly.

    ``v *= sqrt(N T_target / KE)`` with KE summed exactly, like the initial state; a
    state with no kinetic energy is left alone. Deterministic, so it needs no seed.
    """
    target = params.thermostat_temperature
    if target is None or step == 0 or step % params.thermostat_every:
        return
    kinetic = kinetic_energy(velocities)
    if kinetic > 0:
        velocities *= math.sqrt(params.num_particles * target / kinetic)


@dataclass(frozen=True, kw_only=True)
class _SavedState:
    """A checkpoint, read and checked."""

    step: int
    positions: np.ndarray
    velocities: np.ndarray
    initial_total_energy: float
    execution_time_s: float
    pair_evaluations: int
    observations: Observations


def read_checkpoint(state: Any, params: SimulationParams, *,
                    algorithm: str) -> _SavedState | None:
    """``state`` read as a checkpoint of a run of ``algorithm`` with ``params``, or None."""
    if not isinstance(state, Mapping):
        return None
    shape = (params.num_particles, 2)
    try:
        saved = _SavedState(
            step=state["step"], positions=decode_array(state["positions"]),
            velocities=decode_array(state["velocities"]),
            initial_total_energy=state["initial_total_energy"],
            execution_time_s=state["execution_time_s"],
            pair_evaluations=state.get("pair_evaluations", 0),
            observations=Observations.from_checkpoint(state.get("observations")))
        is_same_run = (SimulationParams(**state["parameters"]) == params
                       and state["algorithm"] == algorithm)
    except (KeyError, ValueError, TypeError):
        return None
    is_sound = (type(saved.step) is int and 0 <= saved.step <= params.num_steps
                and saved.positions.shape == shape and saved.velocities.shape == shape
                and type(saved.initial_total_energy) is float
                and type(saved.execution_time_s) is float
                and type(saved.pair_evaluations) is int)
    return saved if is_same_run and is_sound else None


def _new_workspace(kernel: ModuleType, params: SimulationParams,
                   interrupt: Callable[[], None] | None) -> Any:
    """The kernel's workspace for ``params.threads`` threads; ``interrupt`` goes to a
    kernel whose workspace takes one (the python kernel's steps may last seconds)."""
    try:
        workspace = kernel.Workspace(threads=params.threads)
    except ValueError as error:
        raise InvalidTask(str(error), field="parameters.threads") from error
    if interrupt is not None and hasattr(workspace, "interrupt"):
        workspace.interrupt = interrupt
    return workspace


def start_run(params: SimulationParams, algorithm: str, kernel: ModuleType, *,
              interrupt: Callable[[], None] | None = None) -> _Run:
    """A run at step 0, with the initial forces computed and step 0 observed."""
    positions, velocities = build_initial_state(params)
    forces = np.zeros_like(positions)
    workspace = _new_workspace(kernel, params, interrupt)
    potential = kernel.compute_forces(positions, forces, box_length=params.box_length,
                                      cutoff=params.cutoff, workspace=workspace)
    run = _Run(params=params, algorithm=algorithm, kernel=kernel, workspace=workspace,
               positions=positions, velocities=velocities, forces=forces,
               potential_energy=potential,
               initial_total_energy=kinetic_energy(velocities) + potential,
               step=0, earlier_seconds=0.0, observations=Observations())
    run.record_observations()
    return run


def resume_run(params: SimulationParams, algorithm: str, kernel: ModuleType,
               state: Mapping[str, Any], *,
               interrupt: Callable[[], None] | None = None) -> _Run:
    """A run at a checkpoint's step; F is recomputed from x, giving the same bits."""
    saved = read_checkpoint(state, params, algorithm=algorithm)
    if saved is None:
        raise InvalidTask(f"not a checkpoint of this {algorithm} run with these parameters",
                          field="resume_from")
    forces = np.zeros_like(saved.positions)
    workspace = _new_workspace(kernel, params, interrupt)
    potential = kernel.compute_forces(saved.positions, forces, box_length=params.box_length,
                                      cutoff=params.cutoff, workspace=workspace)
    workspace.pair_evaluations = saved.pair_evaluations  # this pass is not one of the run's
    return _Run(params=params, algorithm=algorithm, kernel=kernel, workspace=workspace,
                positions=saved.positions, velocities=saved.velocities, forces=forces,
                potential_energy=potential, initial_total_energy=saved.initial_total_energy,
                step=saved.step, earlier_seconds=saved.execution_time_s,
                observations=saved.observations)


def _advance(run: _Run, steps: int) -> None:
    """Integrate ``steps`` steps; refuse to go on from a state that blew up."""
    params = run.params
    try:
        run.potential_energy = run.kernel.integrate_steps(
            run.positions, run.velocities, run.forces, box_length=params.box_length,
            cutoff=params.cutoff, dt=params.dt, num_steps=steps, workspace=run.workspace)
    except (OverflowError, ValueError, ZeroDivisionError) as error:
        raise _unstable(run.step + steps) from error
    run.step += steps
    if not (math.isfinite(run.potential_energy) and np.isfinite(run.velocities).all()):
        raise _unstable(run.step)


def _unstable(step: int) -> InvalidTask:
    """The error for a run whose energy stopped being finite."""
    return InvalidTask(f"the integration became unstable (non-finite energy by step {step}); "
                       "use a smaller dt or temperature", field="parameters.dt")


def _next_chunk_steps(steps: int, seconds: float, chunk_seconds: float) -> int:
    """How many steps should take about ``chunk_seconds``, growing at most tenfold."""
    if seconds <= 0:
        return steps * 10
    return max(1, min(steps * 10, int(steps * chunk_seconds / seconds)))


def integrate_in_chunks(run: _Run, *, on_chunk: ChunkCallback | None, chunk_seconds: float,
                        started: float) -> None:
    """Integrate to ``num_steps``, calling ``on_chunk`` about every ``chunk_seconds``.

    A chunk cut short by something due calls back only if ``chunk_seconds`` have
    passed since the last call. When the first force pass alone took ``chunk_seconds``
    or more (a large run), ``on_chunk`` is called before the first step too, so a
    cancel is heard before a step as long as that pass.
    """
    steps = 1
    called_at = time.perf_counter()
    if (on_chunk is not None and 0 < chunk_seconds <= called_at - started
            and run.step < run.params.num_steps):
        on_chunk(run.step, lambda: run.to_checkpoint(
            execution_time_s=run.earlier_seconds + called_at - started))
    while run.step < run.params.num_steps:
        to_event = steps_to_next_event(run.params, run.step)
        planned = min(steps, run.params.num_steps - run.step)
        chunk_started = time.perf_counter()
        _advance(run, min(planned, to_event))
        run.record_observations()
        steps = _next_chunk_steps(min(planned, to_event), time.perf_counter() - chunk_started,
                                  chunk_seconds)
        now = time.perf_counter()
        if on_chunk is not None and (planned <= to_event or now - called_at >= chunk_seconds):
            elapsed = run.earlier_seconds + now - started
            on_chunk(run.step, lambda elapsed=elapsed: run.to_checkpoint(execution_time_s=elapsed))
            called_at = time.perf_counter()


def result_of(run: _Run, *, execution_time_s: float, memory_peak_mb: float) -> dict[str, Any]:
    """The spec's result fields for a finished run, plus the observations asked for."""
    count = run.params.num_particles
    kinetic = kinetic_energy(run.velocities)
    total = kinetic + run.potential_energy
    return {
        "kinetic_energy": kinetic,
        "potential_energy": run.potential_energy,
        "total_energy": total,
        "initial_total_energy": run.initial_total_energy,
        "energy_drift": abs(total - run.initial_total_energy) / count,
        "momentum": total_momentum(run.velocities),
        "particles_processed": count,
        "steps_completed": run.step,
        "pair_evaluations": run.workspace.pair_evaluations,
        "execution_time_s": execution_time_s,
        "memory_peak_mb": memory_peak_mb,
        "algorithm": run.algorithm,
        **run.observations.to_result(run.params),
    }


def run_with_kernel(params: SimulationParams, *, algorithm: str, kernel: ModuleType,
                    on_chunk: ChunkCallback | None, resume_from: Mapping[str, Any] | None,
                    chunk_seconds: float,
                    interrupt: Callable[[], None] | None = None) -> dict[str, Any]:
    """``run_simulation`` once the kernel module is known."""
    started = time.perf_counter()
    with MemoryPeak() as memory:
        if resume_from is None:
            run = start_run(params, algorithm, kernel, interrupt=interrupt)
        else:
            run = resume_run(params, algorithm, kernel, resume_from, interrupt=interrupt)
        integrate_in_chunks(run, on_chunk=on_chunk, chunk_seconds=chunk_seconds,
                            started=started)
    elapsed = run.earlier_seconds + time.perf_counter() - started
    return result_of(run, execution_time_s=elapsed, memory_peak_mb=memory.peak_mb)
