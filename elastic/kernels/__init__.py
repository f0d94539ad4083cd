"""Particle-simulation kernels and the driver they share (specs/particles.md).

``ALGORITHMS`` maps each algorithm that loaded on this machine to its kernel module
(see ``python_kernel`` for the two functions and the ``Workspace`` every kernel has).
The compiled kernel is imported once; asking for it when it is not built raises
``UnavailableAlgorithm``, never a silent fallback. ``run_simulation`` builds the
initial state, lets the kernel integrate it chunk by chunk (``driver``), offers a
checkpoint after each chunk and returns the spec's result.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from elastic.errors import UnavailableAlgorithm
from elastic.kernels import driver, numpy_kernel, python_kernel
from elastic.kernels.driver import ChunkCallback, build_initial_state
from elastic.kernels.observables import kinetic_energy, total_momentum
from elastic.kernels.params import SimulationParams

KNOWN_ALGORITHMS = ("python", "numpy", "cython")
# The compiled kernel's OpenMP threads wait for each other by sleeping, not spinning
# (read when the extension loads): a worker shares its CPUs with other tasks, and a
# spinning thread on a busy machine made a threaded step up to 10x slower than a serial one.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ALGORITHMS: dict[str, ModuleType] = {"python": python_kernel, "numpy": numpy_kernel}
CYTHON_IMPORT_ERROR: str | None = None
try:
    ALGORITHMS["cython"] = importlib.import_module("elastic.kernels.cython_kernel")
except ImportError as error:
    CYTHON_IMPORT_ERROR = f"{type(error).__name__}: {error}"

BUILD_HINT = ("run `python setup.py build_ext --inplace` in the source tree, or reinstall "
              "elastic where a C compiler is available (`pip install .`)")

__all__ = ["ALGORITHMS", "BUILD_HINT", "CYTHON_IMPORT_ERROR", "KNOWN_ALGORITHMS", "ChunkCallback",
           "available_algorithms", "build_initial_state", "is_checkpoint_of", "kernel_for",
           "kinetic_energy", "run_simulation", "total_momentum"]


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


def is_checkpoint_of(state: Any, params: SimulationParams, *, algorithm: str) -> bool:
    """Whether ``state`` is a checkpoint of a run of ``algorithm`` with ``params``."""
    return driver.read_checkpoint(state, params, algorithm=algorithm) is not None


def run_simulation(params: SimulationParams, *, algorithm: str,
                   on_chunk: ChunkCallback | None = None,
                   resume_from: Mapping[str, Any] | None = None,
                   chunk_seconds: float = 0.2,
                   interrupt: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run (or resume) a simulation and return the spec's result.

    Args:
        params: validated parameters (``params.parse_simulation_params``).
        algorithm: one of ``available_algorithms()``.
        on_chunk: called as ``on_chunk(steps_done, make_checkpoint)`` after each chunk
            of steps, about every ``chunk_seconds`` (never less than one step).
            ``make_checkpoint()`` returns a JSON-ready checkpoint whose floats read back
            exactly; an exception raised here (``TaskCancelled``) stops the run.
        resume_from: a checkpoint from ``on_chunk`` of the same parameters and
            algorithm; the result is bit-identical to a run that was never stopped.
        chunk_seconds: the wanted time between two ``on_chunk`` calls.
        interrupt: called every few thousand particles inside a step of the python
            kernel (whose steps may last seconds); an exception raised here stops the run.

    ``execution_time_s`` is the wall time of this call plus that of the attempts
    before the checkpoint; ``memory_peak_mb`` is measured (see ``kernels.memory``).
    The result also holds ``series``, ``box_length`` and ``snapshots``, and ``rdf``
    when the parameters ask for them (see ``kernels.observables``).

    Raises:
        UnavailableAlgorithm: the algorithm is unknown or not built here.
        InvalidTask: ``resume_from`` does not fit, the kernel cannot run
            ``params.threads`` threads, or the integration blew up.
    """
    return driver.run_with_kernel(params, algorithm=algorithm, kernel=kernel_for(algorithm),
                                  on_chunk=on_chunk, resume_from=resume_from,
                                  chunk_seconds=chunk_seconds, interrupt=interrupt)
