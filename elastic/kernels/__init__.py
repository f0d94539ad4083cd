"""Particle-simulation kernels and the driver they share (specs/particles.md).

``ALGORITHMS`` maps each algorithm that loaded on this machine to its kernel module
(see ``python_kernel`` for the two functions every kernel has). The compiled kernel
is imported once; asking for it when it is not built raises ``UnavailableAlgorithm``,
never a silent fallback. ``run_simulation`` builds the initial state, lets the kernel
integrate it chunk by chunk, hands back a checkpoint after each chunk and returns the
spec's result.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from elastic.errors import InvalidTask, UnavailableAlgorithm
from elastic.kernels import numpy_kernel, python_kernel
from elastic.kernels.memory import MemoryPeak
from elastic.kernels.params import SimulationParams

KNOWN_ALGORITHMS = ("python", "numpy", "cython")
ALGORITHMS: dict[str, ModuleType] = {"python": python_kernel, "numpy": numpy_kernel}
CYTHON_IMPORT_ERROR: str | None = None
try:
    ALGORITHMS["cython"] = importlib.import_module("elastic.kernels.cython_kernel")
except ImportError as error:
    CYTHON_IMPORT_ERROR = f"{type(error).__name__}: {error}"

BUILD_HINT = ("run `python setup.py build_ext --inplace` in the source tree, or reinstall "
              "elastic where a C compiler is available (`pip install .`)")

ChunkCallback = Callable[[int, dict[str, Any]], None]


def available_algorithms() -> list[str]:
    """The algorithms this machine can run, in ``KNOWN_ALGORITHMS`` order."""
    return [name for name in KNOWN_ALGORITHMS if name in ALGORITHMS]


def kernel_for(algorithm: str) -> ModuleType:
    """The kernel module of ``algorithm``.

    Raises:
        UnavailableAlgorithm: the algorithm is unknown, or its extension is not built.
    """
    if algorithm in ALGORITHMS:
        return ALGORITHMS[algorithm]
    if algorithm == "cython":
        raise UnavailableAlgorithm(
            f"cython extension not built: {BUILD_HINT} (import said: {CYTHON_IMPORT_ERROR})")
    raise UnavailableAlgorithm(
        f"unknown algorithm {algorithm!r} (known: {', '.join(KNOWN_ALGORITHMS)})")


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


def kinetic_energy(velocities: np.ndarray) -> float:
    """``0.5 * sum(v**2)`` (unit masses), summed exactly so any order gives the same bits."""
    return 0.5 * math.fsum((velocities * velocities).ravel().tolist())


def total_momentum(velocities: np.ndarray) -> list[float]:
    """``[px, py]`` (unit masses), summed exactly."""
    return [math.fsum(column) for column in velocities.T.tolist()]


@dataclass(kw_only=True)
class _Run:
    """The state of one run between chunks."""

    params: SimulationParams
    algorithm: str
    positions: np.ndarray
    velocities: np.ndarray
    forces: np.ndarray
    potential_energy: float
    initial_total_energy: float
    step: int
    earlier_seconds: float

    def to_checkpoint(self, *, execution_time_s: float) -> dict[str, Any]:
        """A JSON-ready state from which ``run_simulation`` can go on exactly."""
        return {
            "algorithm": self.algorithm,
            "parameters": self.params.as_dict(),
            "step": self.step,
            "positions": self.positions.tolist(),
            "velocities": self.velocities.tolist(),
            "initial_total_energy": self.initial_total_energy,
            "execution_time_s": execution_time_s,
        }


def is_checkpoint_of(state: Any, params: SimulationParams, *, algorithm: str) -> bool:
    """Whether ``state`` is a checkpoint of a run of ``algorithm`` with ``params``."""
    if not isinstance(state, Mapping):
        return False
    shape = (params.num_particles, 2)
    try:
        return (state["parameters"] == params.as_dict()
                and state["algorithm"] == algorithm
                and type(state["step"]) is int and 0 <= state["step"] <= params.num_steps
                and np.shape(state["positions"]) == shape
                and np.shape(state["velocities"]) == shape
                and type(state["initial_total_energy"]) is float
                and type(state["execution_time_s"]) is float)
    except (KeyError, ValueError):
        return False


def _start_run(params: SimulationParams, algorithm: str, kernel: ModuleType) -> _Run:
    """A run at step 0, with the initial forces computed."""
    positions, velocities = build_initial_state(params)
    forces = np.zeros_like(positions)
    potential = kernel.compute_forces(positions, forces, box_length=params.box_length,
                                      cutoff=params.cutoff)
    return _Run(params=params, algorithm=algorithm, positions=positions,
                velocities=velocities, forces=forces, potential_energy=potential,
                initial_total_energy=kinetic_energy(velocities) + potential,
                step=0, earlier_seconds=0.0)


def _resume_run(params: SimulationParams, algorithm: str, kernel: ModuleType,
                state: Mapping[str, Any]) -> _Run:
    """A run at a checkpoint's step; F is recomputed from x, giving the same bits."""
    if not is_checkpoint_of(state, params, algorithm=algorithm):
        raise InvalidTask(f"not a checkpoint of this {algorithm} run with these parameters",
                          field="resume_from")
    positions = np.array(state["positions"], dtype=np.float64)
    forces = np.zeros_like(positions)
    potential = kernel.compute_forces(positions, forces, box_length=params.box_length,
                                      cutoff=params.cutoff)
    return _Run(params=params, algorithm=algorithm, positions=positions,
                velocities=np.array(state["velocities"], dtype=np.float64), forces=forces,
                potential_energy=potential, initial_total_energy=state["initial_total_energy"],
                step=state["step"], earlier_seconds=state["execution_time_s"])


def _advance(run: _Run, kernel: ModuleType, steps: int) -> None:
    """Integrate ``steps`` steps; refuse to go on from a state that blew up."""
    params = run.params
    try:
        run.potential_energy = kernel.integrate_steps(
            run.positions, run.velocities, run.forces, box_length=params.box_length,
            cutoff=params.cutoff, dt=params.dt, num_steps=steps)
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


def _integrate_in_chunks(run: _Run, kernel: ModuleType, *, on_chunk: ChunkCallback | None,
                         chunk_seconds: float, started: float) -> None:
    """Integrate to ``num_steps``, calling ``on_chunk`` every ``chunk_seconds`` or so."""
    steps = 1
    while run.step < run.params.num_steps:
        steps = min(steps, run.params.num_steps - run.step)
        chunk_started = time.perf_counter()
        _advance(run, kernel, steps)
        steps = _next_chunk_steps(steps, time.perf_counter() - chunk_started, chunk_seconds)
        if on_chunk is not None:
            elapsed = run.earlier_seconds + time.perf_counter() - started
            on_chunk(run.step, run.to_checkpoint(execution_time_s=elapsed))


def _result_of(run: _Run, *, execution_time_s: float, memory_peak_mb: float) -> dict[str, Any]:
    """The spec's result fields for a finished run."""
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
        "pair_evaluations": (run.step + 1) * (count * (count - 1) // 2),
        "execution_time_s": execution_time_s,
        "memory_peak_mb": memory_peak_mb,
        "algorithm": run.algorithm,
    }


def run_simulation(params: SimulationParams, *, algorithm: str,
                   on_chunk: ChunkCallback | None = None,
                   resume_from: Mapping[str, Any] | None = None,
                   chunk_seconds: float = 0.2) -> dict[str, Any]:
    """Run (or resume) a simulation and return the spec's result.

    Args:
        params: validated parameters (``params.parse_simulation_params``).
        algorithm: one of ``available_algorithms()``.
        on_chunk: called as ``on_chunk(steps_done, checkpoint)`` after each chunk of
            steps, about every ``chunk_seconds`` (never less than one step). The
            checkpoint is JSON-ready and its floats read back exactly; an exception
            raised here (``TaskCancelled``) stops the run.
        resume_from: a checkpoint from ``on_chunk`` of the same parameters and
            algorithm; the result is bit-identical to a run that was never stopped.
        chunk_seconds: the wanted time between two ``on_chunk`` calls.

    ``execution_time_s`` is the wall time of this call plus that of the attempts
    before the checkpoint; ``memory_peak_mb`` is measured (see ``kernels.memory``).

    Raises:
        UnavailableAlgorithm: the algorithm is unknown or not built here.
        InvalidTask: ``resume_from`` does not fit, or the integration blew up.
    """
    kernel = kernel_for(algorithm)
    started = time.perf_counter()
    with MemoryPeak() as memory:
        if resume_from is None:
            run = _start_run(params, algorithm, kernel)
        else:
            run = _resume_run(params, algorithm, kernel, resume_from)
        _integrate_in_chunks(run, kernel, on_chunk=on_chunk, chunk_seconds=chunk_seconds,
                             started=started)
    elapsed = run.earlier_seconds + time.perf_counter() - started
    return _result_of(run, execution_time_s=elapsed, memory_peak_mb=memory.peak_mb)
