"""Every kernel computes the same physics: the agreement rules of specs/particles.md."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import numpy as np
import pytest
from lj_all_pairs import all_pair_forces, integrate_all_pairs

from elastic import kernels
from elastic.errors import InvalidTask, UnavailableAlgorithm
from elastic.kernels.driver import CheckpointMaker
from elastic.kernels.memory import MemoryPeak, resident_memory_mb
from elastic.kernels.params import SimulationParams, parse_simulation_params

VOLATILE = ("execution_time_s", "memory_peak_mb")
PHYSICS = ("kinetic_energy", "potential_energy", "total_energy", "initial_total_energy",
           "energy_drift", "momentum")


def require_cython() -> None:
    """Skip without the compiled kernel, except in CI, where its absence is a failure."""
    if "cython" in kernels.ALGORITHMS:
        return
    reason = (f"cython extension not built ({kernels.CYTHON_IMPORT_ERROR}); "
              "build it with `python setup.py build_ext --inplace`")
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def params_of(**given: Any) -> SimulationParams:
    """Validated parameters, as a task would carry them."""
    return parse_simulation_params(given)


def physics_of(result: dict[str, Any]) -> dict[str, Any]:
    """The result without the fields that depend on the machine's speed."""
    return {key: value for key, value in result.items() if key not in VOLATILE}


@pytest.mark.parametrize(("seed", "density"), [(0, 0.5), (7, 1.0), (3, 0.2)])
def test_python_and_cython_give_bit_identical_energies_and_momentum(
        seed: int, density: float) -> None:
    require_cython()
    params = params_of(num_particles=40, num_steps=60, seed=seed, density=density)
    python = kernels.run_simulation(params, algorithm="python")
    cython = kernels.run_simulation(params, algorithm="cython")
    for key in PHYSICS:
        assert python[key] == cython[key], key


@pytest.mark.parametrize(("seed", "density", "num_steps"), [(0, 0.5, 500), (5, 0.9, 300)])
def test_numpy_is_within_1e_9_of_python(seed: int, density: float, num_steps: int) -> None:
    params = params_of(num_particles=30, num_steps=num_steps, seed=seed, density=density)
    python = kernels.run_simulation(params, algorithm="python")
    numpy = kernels.run_simulation(params, algorithm="numpy")
    for key in ("kinetic_energy", "potential_energy", "total_energy", "initial_total_energy"):
        assert numpy[key] == pytest.approx(python[key], rel=1e-9, abs=0), key
    assert numpy["momentum"] == pytest.approx(python["momentum"], abs=1e-9)


def test_numpy_in_fact_matches_python_bit_for_bit() -> None:
    # More than the spec asks: numpy_kernel adds forces and energies in pair order.
    params = params_of(num_particles=40, num_steps=60, seed=8, density=1.1)
    python = kernels.run_simulation(params, algorithm="python")
    numpy = kernels.run_simulation(params, algorithm="numpy")
    for key in PHYSICS:
        assert numpy[key] == python[key], key


def test_energy_is_conserved_over_1000_steps_of_100_particles() -> None:
    fastest = "cython" if "cython" in kernels.ALGORITHMS else "numpy"
    result = kernels.run_simulation(params_of(num_particles=100, num_steps=1000),
                                    algorithm=fastest)
    assert result["energy_drift"] < 1e-3
    assert result["steps_completed"] == 1000


@pytest.mark.parametrize("algorithm", kernels.KNOWN_ALGORITHMS)
def test_resuming_from_a_mid_run_checkpoint_gives_the_same_bits(algorithm: str) -> None:
    if algorithm == "cython":
        require_cython()
    params = params_of(num_particles=30, num_steps=40, seed=11)
    checkpoints: dict[int, str] = {}

    def keep_checkpoint(steps_done: int, make_checkpoint: CheckpointMaker) -> None:
        checkpoints[steps_done] = json.dumps(make_checkpoint())

    whole = kernels.run_simulation(params, algorithm=algorithm, on_chunk=keep_checkpoint,
                                   chunk_seconds=0.0)
    state = json.loads(checkpoints[17])
    assert state["step"] == 17
    resumed = kernels.run_simulation(params, algorithm=algorithm, resume_from=state)
    assert physics_of(resumed) == physics_of(whole)


def test_a_checkpoint_reads_back_exactly_from_json() -> None:
    params = params_of(num_particles=20, num_steps=3)
    states: list[dict[str, Any]] = []
    kernels.run_simulation(params, algorithm="numpy", chunk_seconds=0.0,
                           on_chunk=lambda steps_done, make: states.append(make()))
    assert [state["step"] for state in states] == [1, 2, 3]
    assert json.loads(json.dumps(states[-1])) == states[-1]
    assert set(states[-1]) >= {"positions", "velocities", "step", "initial_total_energy",
                               "algorithm"}


def test_a_checkpoint_of_other_parameters_is_refused() -> None:
    states: list[dict[str, Any]] = []
    kernels.run_simulation(params_of(num_particles=20, num_steps=2), algorithm="numpy",
                           on_chunk=lambda steps_done, make: states.append(make()))
    with pytest.raises(InvalidTask) as caught:
        kernels.run_simulation(params_of(num_particles=20, num_steps=2, seed=1),
                               algorithm="numpy", resume_from=states[0])
    assert caught.value.field == "resume_from"


@pytest.mark.parametrize("algorithm", kernels.KNOWN_ALGORITHMS)
def test_a_chunked_run_equals_a_one_shot_run(algorithm: str) -> None:
    if algorithm == "cython":
        require_cython()
    params = params_of(num_particles=25, num_steps=30, seed=4)
    step_by_step = kernels.run_simulation(params, algorithm=algorithm, chunk_seconds=0.0)
    in_big_chunks = kernels.run_simulation(params, algorithm=algorithm, chunk_seconds=1e9)
    assert physics_of(step_by_step) == physics_of(in_big_chunks)


@pytest.mark.parametrize("algorithm", kernels.KNOWN_ALGORITHMS)
def test_the_result_says_what_ran_and_counts_the_work(algorithm: str) -> None:
    if algorithm == "cython":
        require_cython()
    params = params_of(num_particles=16, num_steps=5)
    result = kernels.run_simulation(params, algorithm=algorithm)
    positions, velocities = kernels.build_initial_state(params)
    _, pairs_inside = integrate_all_pairs(positions, velocities, box_length=params.box_length,
                                          cutoff=params.cutoff, dt=params.dt, num_steps=5)
    assert result["algorithm"] == algorithm
    assert result["particles_processed"] == 16
    assert result["steps_completed"] == 5
    assert result["pair_evaluations"] == pairs_inside  # the 6 force passes' pairs inside rc
    assert result["energy_drift"] == abs(result["total_energy"]
                                         - result["initial_total_energy"]) / 16
    assert result["memory_peak_mb"] > 0
    assert result["execution_time_s"] > 0


def test_the_initial_state_is_a_lattice_at_the_asked_temperature() -> None:
    params = params_of(num_particles=50, num_steps=0, temperature=2.0, seed=9)
    positions, velocities = kernels.build_initial_state(params)
    spacing = params.box_length / 8  # ceil(sqrt(50)) = 8 sites a side
    assert positions[9].tolist() == [1.5 * spacing, 1.5 * spacing]
    assert kernels.kinetic_energy(velocities) == pytest.approx(50 * 2.0, rel=1e-12)
    assert kernels.total_momentum(velocities) == pytest.approx([0.0, 0.0], abs=1e-12)


def test_zero_steps_report_the_initial_state() -> None:
    params = params_of(num_particles=20, num_steps=0)
    result = kernels.run_simulation(params, algorithm="python")
    positions, _ = kernels.build_initial_state(params)
    *_, pairs_inside = all_pair_forces(positions[:, 0].tolist(), positions[:, 1].tolist(),
                                       box_length=params.box_length, cutoff=params.cutoff)
    assert result["total_energy"] == result["initial_total_energy"]
    assert result["pair_evaluations"] == pairs_inside


@pytest.mark.parametrize("algorithm", kernels.KNOWN_ALGORITHMS)
def test_a_run_that_blows_up_is_refused_naming_dt(algorithm: str) -> None:
    if algorithm == "cython":
        require_cython()
    params = params_of(num_particles=100, num_steps=300, temperature=100.0, dt=0.02, density=1.2)
    with pytest.raises(InvalidTask) as caught:
        kernels.run_simulation(params, algorithm=algorithm)
    assert caught.value.field == "parameters.dt"


def test_an_unbuilt_cython_is_unavailable_with_a_build_hint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(kernels.ALGORITHMS, "cython", raising=False)
    assert "cython" not in kernels.available_algorithms()
    with pytest.raises(UnavailableAlgorithm, match=r"cython extension not built.*build_ext"):
        kernels.run_simulation(params_of(num_particles=20, num_steps=1), algorithm="cython")


def test_an_unknown_algorithm_is_unavailable() -> None:
    with pytest.raises(UnavailableAlgorithm, match="unknown algorithm 'fortran'"):
        kernels.run_simulation(params_of(num_particles=20, num_steps=1), algorithm="fortran")


def test_available_algorithms_lists_what_loaded_in_order() -> None:
    available = kernels.available_algorithms()
    assert available[:2] == ["python", "numpy"]
    assert available == [name for name in kernels.KNOWN_ALGORITHMS if name in kernels.ALGORITHMS]


def test_the_cython_kernel_releases_the_gil_while_it_computes() -> None:
    require_cython()
    kernel = kernels.ALGORITHMS["cython"]
    params = params_of(num_particles=2000, num_steps=1)
    positions, velocities = kernels.build_initial_state(params)
    forces = np.zeros_like(positions)
    done = threading.Event()

    def integrate() -> None:
        kernel.integrate_steps(positions, velocities, forces, box_length=params.box_length,
                               cutoff=params.cutoff, dt=params.dt, num_steps=2000)
        done.set()

    worker = threading.Thread(target=integrate)
    worker.start()
    ticks = 0
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    worker.join()
    assert ticks >= 20, "the main thread barely ran while the kernel computed"


def test_the_cython_kernel_refuses_arrays_of_different_lengths() -> None:
    require_cython()
    kernel = kernels.ALGORITHMS["cython"]
    with pytest.raises(ValueError, match="shape"):
        kernel.integrate_steps(np.zeros((4, 2)), np.zeros((3, 2)), np.zeros((4, 2)),
                               box_length=10.0, cutoff=2.5, dt=0.005, num_steps=1)



def test_the_memory_peak_sees_an_allocation_that_is_gone_by_the_end() -> None:
    before_mb = resident_memory_mb()
    with MemoryPeak() as memory:
        block = np.ones(64 * 2**20 // 8)  # 64 MB, every page written
        time.sleep(0.1)
        del block
    assert memory.peak_mb >= before_mb + 60


def test_a_run_whose_first_force_pass_outlasts_a_chunk_reports_before_its_first_step() -> None:
    steps: list[int] = []
    kernels.run_simulation(params_of(num_particles=400, num_steps=3), algorithm="python",
                           chunk_seconds=1e-6, on_chunk=lambda done, make: steps.append(done))
    assert steps == [0, 1, 2, 3]
