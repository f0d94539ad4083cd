"""How long a simulation will take, known before it starts.

The model counts the work: every step visits each particle once and each listed pair
once (pairs closer than cutoff + skin, about ``pi (rc + skin)^2 rho / 2`` per particle,
or all pairs in a small box), so

    seconds = steps * N * (ns_per_particle_step + listed_pairs_per_particle * ns_per_pair)
              + samples * N * ns_per_particle_sample
              + g(r) configurations * pairs measured * ns_per_rdf_pair

with per-kernel constants calibrated on the project's 2-core x86-64 build machine
(``CALIBRATED_NS``; list rebuilds are folded into the constants). A worker
scales them by its own speed: ``measured_speed_factor`` times the kernel once on a
small problem (a few milliseconds, once per process) and compares with the model.
The cython kernel on T threads is counted as ``1 + 0.7 (T - 1)`` times faster, up to
the number of CPUs.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from elastic.kernels.driver import build_initial_state
from elastic.kernels.params import SimulationParams, rdf_pairs_per_configuration, sample_count
from elastic.kernels.python_kernel import DEFAULT_SKIN_LENGTH


@dataclass(frozen=True)
class KernelCost:
    """Nanoseconds per unit of work for one kernel."""

    per_particle_step: float
    per_pair: float
    per_particle_sample: float = 250.0  # exact sums over the velocities (math.fsum)
    per_rdf_pair: float = 60.0  # numpy, whatever the kernel


# Fitted to CPU time per step on the build machine at densities 0.3 and 1.0 (one
# thread; 32,000 particles for numpy and cython, 2,000 for python).
CALIBRATED_NS = {
    "python": KernelCost(per_particle_step=1000.0, per_pair=425.0),
    "numpy": KernelCost(per_particle_step=90.0, per_pair=22.0),
    "cython": KernelCost(per_particle_step=32.0, per_pair=5.0),
}
THREAD_EFFICIENCY = 0.7
CALIBRATION = {"python": (300, 3), "numpy": (2000, 10), "cython": (2000, 40)}


def listed_pairs_per_particle(params: SimulationParams) -> float:
    """About how many pairs per particle the neighbour list holds."""
    reach = params.cutoff + DEFAULT_SKIN_LENGTH
    neighbours = min(params.num_particles - 1, math.pi * reach * reach * params.density)
    return neighbours / 2


def thread_speedup(params: SimulationParams, algorithm: str) -> float:
    """How much faster ``params.threads`` threads make the kernel (model)."""
    if algorithm != "cython":
        return 1.0
    usable = min(params.threads, os.cpu_count() or 1)
    return 1.0 + THREAD_EFFICIENCY * (usable - 1)


def estimate_seconds(params: SimulationParams, algorithm: str, *, from_step: int = 0,
                     speed_factor: float = 1.0) -> float:
    """The model's seconds for steps ``from_step`` to ``num_steps`` (``speed_factor`` 1 =
    the calibration machine)."""
    cost = CALIBRATED_NS[algorithm]
    count = params.num_particles
    steps = params.num_steps - from_step
    per_step = count * (cost.per_particle_step
                        + listed_pairs_per_particle(params) * cost.per_pair)
    samples = max(sample_count(params.num_steps, params.sample_every)
                  - sample_count(from_step, params.sample_every), 0)
    rdf_configurations = samples if params.sample_every is not None else 1
    rdf_ns = (rdf_configurations * rdf_pairs_per_configuration(params) * cost.per_rdf_pair
              if params.rdf_bins is not None else 0.0)
    total_ns = (steps * per_step / thread_speedup(params, algorithm)
                + samples * count * cost.per_particle_sample + rdf_ns)
    return total_ns * 1e-9 * speed_factor


@functools.cache
def measure_speed_factor(kernel: ModuleType, algorithm: str) -> float:
    """This machine's time over the model's: the best of two short runs (once per process)."""
    count, steps = CALIBRATION[algorithm]
    params = SimulationParams(num_particles=count, num_steps=steps)
    positions, velocities = build_initial_state(params)
    forces = np.zeros_like(positions)
    workspace = kernel.Workspace()
    kernel.compute_forces(positions, forces, box_length=params.box_length, cutoff=params.cutoff,
                          workspace=workspace)
    best = math.inf
    for _ in range(2):
        began = time.perf_counter()
        kernel.integrate_steps(positions, velocities, forces, box_length=params.box_length,
                               cutoff=params.cutoff, dt=params.dt, num_steps=steps,
                               workspace=workspace)
        best = min(best, time.perf_counter() - began)
    return best / estimate_seconds(params, algorithm)
