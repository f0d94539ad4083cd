"""The neighbour-list kernels give the bits of the all-pairs loops they replaced."""

from __future__ import annotations

import functools
import hashlib
import math
import sys
from types import ModuleType

import numpy as np
import pytest
from lj_all_pairs import integrate_all_pairs
from test_kernels_agree import require_cython

from elastic import kernels
from elastic.kernels import numpy_kernel, python_kernel
from elastic.kernels.params import SimulationParams, parse_simulation_params

# (N, seed, density, temperature, steps): a box under three cells across (every pair is
# a candidate), cell lists at several densities, hot runs whose particles cross the
# periodic boundary and force many list rebuilds.
ALL_PAIRS_CASES = [
    (13, 1, 0.5, 1.0, 120),
    (60, 2, 0.9, 2.0, 100),
    (130, 3, 0.5, 4.0, 100),
    (180, 4, 1.1, 1.0, 60),
]
# SHA-256 (first 32 hex digits) of final positions + velocities + forces, initial and final
# potential energy (hex), computed with the all-pairs cython kernel before this change.
BEFORE_NEIGHBOUR_LISTS = {
    (700, 5, 0.2, 5.0, 200): ("a1c2100d9b4e118bf2dec31fbf94c637", "-0x1.ac144890a9b00p+4",
                              "-0x1.3712a29cd1a39p+7"),
    (2000, 6, 0.5, 1.0, 300): ("0c815960c57a5607bc78b96904d6cfd4", "-0x1.df69a68bcb382p+10",
                               "-0x1.2607c28c94a52p+11"),
}


def params_of(case: tuple[int, int, float, float, int]) -> SimulationParams:
    """The parameters of a case."""
    count, seed, density, temperature, steps = case
    return parse_simulation_params({"num_particles": count, "seed": seed, "density": density,
                                    "temperature": temperature, "num_steps": steps})


@functools.cache
def all_pairs_run(case: tuple[int, int, float, float, int]) -> tuple[bytes, bytes, str, int]:
    """Final positions and velocities (bytes), potential (hex) and pairs inside the cutoff
    of the all-pairs reference (computed once per case: it is slow)."""
    params = params_of(case)
    positions, velocities = kernels.build_initial_state(params)
    energy, pairs_inside = integrate_all_pairs(positions, velocities, box_length=params.box_length,
                                               cutoff=params.cutoff, dt=params.dt,
                                               num_steps=params.num_steps)
    return positions.tobytes(), velocities.tobytes(), energy.hex(), pairs_inside


def kernel_named(algorithm: str) -> ModuleType:
    """The kernel module, skipping cython where it is not built (failing in CI)."""
    if algorithm == "cython":
        require_cython()
    return kernels.ALGORITHMS[algorithm]


def run_step_by_step(kernel: ModuleType, params: SimulationParams, *, threads: int = 1
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, object, bool]:
    """Integrate one step per call; the state, potential, workspace and whether a particle
    crossed the periodic boundary."""
    positions, velocities = kernels.build_initial_state(params)
    forces = np.zeros_like(positions)
    workspace = kernel.Workspace(threads=threads)
    box = params.box_length
    energy = kernel.compute_forces(positions, forces, box_length=box, cutoff=params.cutoff,
                                   workspace=workspace)
    has_crossed = False
    for _ in range(params.num_steps):
        before = positions.copy()
        energy = kernel.integrate_steps(positions, velocities, forces, box_length=box,
                                        cutoff=params.cutoff, dt=params.dt, num_steps=1,
                                        workspace=workspace)
        has_crossed = has_crossed or bool((np.abs(positions - before) > box / 2).any())
    return positions, velocities, forces, energy, workspace, has_crossed


@pytest.mark.parametrize("case", ALL_PAIRS_CASES)
@pytest.mark.parametrize("algorithm", ["python", "cython", "numpy"])
def test_neighbour_lists_give_the_all_pairs_bits_across_rebuilds_and_the_boundary(
        algorithm: str, case: tuple[int, int, float, float, int]) -> None:
    kernel = kernel_named(algorithm)
    params = params_of(case)
    positions, velocities, forces, energy, workspace, has_crossed = run_step_by_step(
        kernel, params)
    assert (positions.tobytes(), velocities.tobytes(), energy.hex(),
            workspace.pair_evaluations) == all_pairs_run(case)
    assert has_crossed, "no particle crossed the boundary: the case tests less than it says"
    assert workspace.list_builds > 3, "the list was hardly rebuilt"
    assert np.isfinite(forces).all()


@pytest.mark.parametrize("case", sorted(BEFORE_NEIGHBOUR_LISTS))
@pytest.mark.parametrize("algorithm", ["cython", "numpy"])
def test_larger_runs_end_on_the_bits_the_all_pairs_kernel_gave(
        algorithm: str, case: tuple[int, int, float, float, int]) -> None:
    kernel = kernel_named(algorithm)
    params = params_of(case)
    positions, velocities = kernels.build_initial_state(params)
    forces = np.zeros_like(positions)
    workspace = kernel.Workspace()
    initial = kernel.compute_forces(positions, forces, box_length=params.box_length,
                                    cutoff=params.cutoff, workspace=workspace)
    final = kernel.integrate_steps(positions, velocities, forces, box_length=params.box_length,
                                   cutoff=params.cutoff, dt=params.dt,
                                   num_steps=params.num_steps, workspace=workspace)
    digest = hashlib.sha256(positions.tobytes() + velocities.tobytes()
                            + forces.tobytes()).hexdigest()[:32]
    assert (digest, initial.hex(), final.hex()) == BEFORE_NEIGHBOUR_LISTS[case]


@pytest.mark.parametrize("threads", [2, 3])
def test_cython_threads_give_the_serial_bits_and_the_same_virial(threads: int) -> None:
    kernel = kernel_named("cython")
    params = params_of((kernel.PARALLEL_MIN_PARTICLES + 500, 8, 0.8, 2.0, 40))
    serial = run_step_by_step(kernel, params)
    threaded = run_step_by_step(kernel, params, threads=threads)
    assert threaded[4].active_threads == threads
    for one, other in zip(serial[:3], threaded[:3], strict=True):
        assert one.tobytes() == other.tobytes()
    assert serial[3].hex() == threaded[3].hex()
    assert serial[4].virial == threaded[4].virial
    assert serial[4].pair_evaluations == threaded[4].pair_evaluations


def test_the_virial_is_the_same_in_every_kernel() -> None:
    params = params_of((150, 9, 0.7, 1.0, 30))
    virials = []
    for algorithm in kernels.available_algorithms():
        virials.append(run_step_by_step(kernels.ALGORITHMS[algorithm], params)[4].virial)
    assert len(set(virials)) == 1 and math.isfinite(virials[0])


@pytest.mark.parametrize(("seed", "density"), [(0, 0.5), (5, 0.9)])
def test_numpy_stays_within_1e_9_of_python_for_500_steps_with_cell_lists(
        seed: int, density: float) -> None:
    params = parse_simulation_params({"num_particles": 110, "num_steps": 500, "seed": seed,
                                      "density": density})
    assert python_kernel.cells_per_side(params.box_length, params.cutoff + 0.3) >= 3
    python = kernels.run_simulation(params, algorithm="python")
    numpy = kernels.run_simulation(params, algorithm="numpy")
    for key in ("kinetic_energy", "potential_energy", "total_energy"):
        assert numpy[key] == pytest.approx(python[key], rel=1e-9, abs=0), key
    assert numpy["momentum"] == pytest.approx(python["momentum"], abs=1e-9)


def test_a_workspace_follows_a_new_box_and_particle_count() -> None:
    workspace = numpy_kernel.Workspace()
    for count in (200, 150):
        params = parse_simulation_params({"num_particles": count, "num_steps": 0})
        positions, _ = kernels.build_initial_state(params)
        expected, forces = np.zeros_like(positions), np.zeros_like(positions)
        numpy_kernel.compute_forces(positions, forces, box_length=params.box_length,
                                    cutoff=params.cutoff, workspace=workspace)
        python_kernel.compute_forces(positions, expected, box_length=params.box_length,
                                     cutoff=params.cutoff)
        assert forces.tobytes() == expected.tobytes()


@pytest.mark.parametrize("module", [python_kernel, numpy_kernel])
def test_the_python_and_numpy_kernels_refuse_threads(module: ModuleType) -> None:
    with pytest.raises(ValueError, match="one thread"):
        module.Workspace(threads=2)


def interesting_doubles() -> np.ndarray:
    """Integers, half-integers, their neighbours, random magnitudes, 2**52 edges, inf, nan."""
    rng = np.random.default_rng(3)
    whole = np.concatenate([np.arange(-300.0, 300.0), [2.0**52 - 1, 2.0**52, 2.0**53, -2.0**52,
                                                       -(2.0**52) + 1, 1e300, -1e300]])
    near = np.concatenate([whole, whole + 0.5, np.nextafter(whole, np.inf),
                           np.nextafter(whole, -np.inf), np.nextafter(whole + 0.5, np.inf),
                           np.nextafter(whole + 0.5, -np.inf)])
    spread = rng.standard_normal(20_000) * 10.0 ** rng.integers(-20, 20, 20_000)
    tiny = np.array([5e-324, -5e-324, 1e-310, -1e-310, 0.0, np.inf, -np.inf, sys.float_info.max])
    return np.concatenate([near, spread, tiny])


def test_exact_floor_is_floor_without_sse4() -> None:
    kernel = kernel_named("cython")
    values = interesting_doubles()
    floored = kernel.exact_floor(values)
    assert floored.tobytes() == np.floor(values).tobytes()
    assert np.isnan(kernel.exact_floor(np.array([np.nan])))[0]
    assert math.copysign(1.0, kernel.exact_floor(np.array([-0.0]))[0]) == 1.0  # like Python


def test_exact_floor_agrees_with_pythons_math_floor() -> None:
    kernel = kernel_named("cython")
    values = interesting_doubles()
    finite = values[np.isfinite(values)]
    assert kernel.exact_floor(finite).tolist() == [float(math.floor(value)) for value in finite]
