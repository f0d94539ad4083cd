"""Series, snapshots, g(r) and the thermostat: what they hold, their limits, their resumes."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from elastic import kernels, plots
from elastic.errors import InvalidTask
from elastic.kernels import codec
from elastic.kernels.driver import CheckpointMaker
from elastic.kernels.observables import SERIES_KEYS
from elastic.kernels.params import SimulationParams, parse_simulation_params

OBSERVED = {"num_particles": 120, "num_steps": 60, "seed": 4, "sample_every": 5,
            "snapshot_every": 30, "rdf_bins": 25, "thermostat_temperature": 1.4,
            "thermostat_every": 20}
BODY_LIMIT_BYTES = 10 * 2**20  # the server's default max_body_bytes


def fastest_algorithm() -> str:
    """cython where it is built, else numpy."""
    return "cython" if "cython" in kernels.ALGORITHMS else "numpy"


def test_the_series_hold_every_sample_with_the_documented_definitions() -> None:
    params = parse_simulation_params({**OBSERVED, "thermostat_temperature": None,
                                      "thermostat_every": None})
    result = kernels.run_simulation(params, algorithm="numpy")
    series = result["series"]
    assert set(series) == set(SERIES_KEYS)
    assert series["step"] == list(range(0, 61, 5))
    assert {len(values) for values in series.values()} == {13}
    assert series["temperature"][0] == pytest.approx(params.temperature, rel=1e-12)
    for kinetic, potential, total, temperature in zip(
            series["kinetic_energy"], series["potential_energy"], series["total_energy"],
            series["temperature"], strict=True):
        assert total == kinetic + potential
        assert temperature == kinetic / params.num_particles
    assert series["kinetic_energy"][-1] == result["kinetic_energy"]
    assert series["potential_energy"][-1] == result["potential_energy"]
    assert [series["momentum_x"][-1], series["momentum_y"][-1]] == result["momentum"]
    assert max(map(abs, series["momentum_x"])) < 1e-9


def test_the_pressure_is_the_virial_pressure_of_the_pairs() -> None:
    params = parse_simulation_params({"num_particles": 40, "num_steps": 0, "sample_every": 1,
                                      "density": 0.9})
    result = kernels.run_simulation(params, algorithm="python")
    positions, velocities = kernels.build_initial_state(params)
    virial = 0.0
    for i in range(40):
        for j in range(i + 1, 40):
            delta = positions[i] - positions[j]
            delta -= params.box_length * np.floor(delta / params.box_length + 0.5)
            r2 = float(delta @ delta)
            if r2 < params.cutoff**2:
                virial += 24.0 * (2.0 * r2**-6 - r2**-3)
    kinetic = kernels.kinetic_energy(velocities)
    expected = (kinetic + virial / 2) / params.box_length**2
    assert result["series"]["pressure"] == [pytest.approx(expected, rel=1e-12)]


def test_snapshots_hold_float32_positions_and_speeds_in_base64() -> None:
    params = parse_simulation_params({"num_particles": 50, "num_steps": 10,
                                      "snapshot_every": 10})
    result = kernels.run_simulation(params, algorithm="python")
    assert result["box_length"] == params.box_length
    assert [snapshot["step"] for snapshot in result["snapshots"]] == [0, 10]
    first = result["snapshots"][0]
    assert first["encoding"] == "float32-le-base64"
    positions, speeds = plots.decode_snapshot(first)
    initial_positions, initial_velocities = kernels.build_initial_state(params)
    assert np.array_equal(positions, initial_positions.astype(np.float32))
    assert np.array_equal(speeds, np.hypot(*initial_velocities.T).astype(np.float32))


def test_g_of_r_is_zero_inside_the_core_and_about_one_far_away() -> None:
    params = parse_simulation_params({"num_particles": 600, "num_steps": 200, "seed": 1,
                                      "sample_every": 50, "rdf_bins": 40,
                                      "rdf_max_distance": 6.0})
    rdf = kernels.run_simulation(params, algorithm=fastest_algorithm())["rdf"]
    r, g = np.array(rdf["r"]), np.array(rdf["g"])
    assert len(r) == 40 and r[0] == pytest.approx(6.0 / 80) and r[-1] < 6.0
    assert (g[r < 0.8] == 0).all()
    assert g.max() > 1.3  # the first shell
    assert np.mean(g[r > 4.0]) == pytest.approx(1.0, abs=0.15)


def test_the_thermostat_brings_the_run_to_its_temperature() -> None:
    params = parse_simulation_params({"num_particles": 200, "num_steps": 300, "seed": 2,
                                      "temperature": 0.5, "thermostat_temperature": 2.0,
                                      "thermostat_every": 10, "sample_every": 10})
    first = kernels.run_simulation(params, algorithm="numpy")
    again = kernels.run_simulation(params, algorithm="numpy")
    temperatures = first["series"]["temperature"]
    assert temperatures[0] == pytest.approx(0.5)
    assert first["kinetic_energy"] / 200 == pytest.approx(2.0, rel=1e-12)  # rescaled at 300
    assert np.mean(temperatures[10:]) == pytest.approx(2.0, rel=0.15)
    assert first["series"] == again["series"], "a thermostatted run is reproducible"


@pytest.mark.parametrize("algorithm", kernels.KNOWN_ALGORITHMS)
def test_a_resumed_run_records_the_same_series_snapshots_and_g_of_r(algorithm: str) -> None:
    if algorithm not in kernels.ALGORITHMS:
        pytest.skip(f"{algorithm} not built here")
    params = parse_simulation_params(OBSERVED)
    checkpoints: dict[int, str] = {}

    def keep(steps_done: int, make_checkpoint: CheckpointMaker) -> None:
        checkpoints[steps_done] = json.dumps(make_checkpoint())

    whole = kernels.run_simulation(params, algorithm=algorithm, on_chunk=keep,
                                   chunk_seconds=0.0)
    for step in (23, 40):  # between samples; on a sample, snapshot and thermostat step
        resumed = kernels.run_simulation(params, algorithm=algorithm,
                                         resume_from=json.loads(checkpoints[step]))
        for key in ("series", "snapshots", "rdf", "pair_evaluations", "total_energy",
                    "momentum"):
            assert resumed[key] == whole[key], (step, key)


def test_a_checkpoint_of_the_earlier_json_list_format_still_resumes() -> None:
    params = parse_simulation_params({"num_particles": 30, "num_steps": 20, "seed": 3})
    states: list[dict[str, Any]] = []
    whole = kernels.run_simulation(params, algorithm="numpy", chunk_seconds=0.0,
                                   on_chunk=lambda steps, make: states.append(make()))
    new_format = states[9]
    old_format = {
        "algorithm": "numpy", "step": new_format["step"],
        "parameters": {key: value for key, value in params.as_dict().items()
                       if key in ("num_particles", "num_steps", "seed", "density",
                                  "temperature", "dt", "cutoff")},
        "positions": codec.decode_array(new_format["positions"]).tolist(),
        "velocities": codec.decode_array(new_format["velocities"]).tolist(),
        "initial_total_energy": new_format["initial_total_energy"],
        "execution_time_s": new_format["execution_time_s"],
    }
    resumed = kernels.run_simulation(params, algorithm="numpy",
                                     resume_from=json.loads(json.dumps(old_format)))
    assert resumed["total_energy"] == whole["total_energy"]
    assert resumed["momentum"] == whole["momentum"]


def test_checkpoint_arrays_read_back_bit_for_bit() -> None:
    values = np.random.default_rng(0).standard_normal((1000, 2)) * 1e3
    values[0] = [np.inf, -0.0]
    encoded = json.loads(json.dumps(codec.encode_array(values)))
    assert codec.decode_array(encoded).tobytes() == values.tobytes()
    steps = np.arange(0, 10**8, 10**4, dtype=np.int64)
    assert codec.decode_array(codec.encode_array(steps), dtype="<i8").tolist() == steps.tolist()
    with pytest.raises(ValueError):
        codec.decode_array({**encoded, "data": encoded["data"][:-8]})


def test_a_200000_particle_checkpoint_with_full_series_fits_in_a_request() -> None:
    params = parse_simulation_params({"num_particles": 200_000, "num_steps": 19_998,
                                      "sample_every": 2})  # 10,000 samples: the most
    assert params.sample_every is not None
    checkpoints: list[dict[str, Any]] = []

    class Stop(Exception):
        """Ends the run at its first checkpoint."""

    def keep_first(steps_done: int, make_checkpoint: CheckpointMaker) -> None:
        checkpoints.append(make_checkpoint())
        raise Stop

    with pytest.raises(Stop):
        kernels.run_simulation(params, algorithm=fastest_algorithm(), on_chunk=keep_first)
    checkpoint = checkpoints[0]
    # The series as they are near the end of the run: 10,000 samples of noisy values.
    noise = np.random.default_rng(1).standard_normal(10_000)
    checkpoint["observations"]["series"] = {
        key: codec.encode_array(np.arange(0, 19_999, 2) if key == "step"
                                else 1e3 * noise + index)
        for index, key in enumerate(SERIES_KEYS)}
    size = len(json.dumps(checkpoint).encode())
    assert size < BODY_LIMIT_BYTES - 2**20, f"{size / 2**20:.1f} MiB"


def field_of_error(**given: Any) -> str | None:
    """The field an InvalidTask names when parsing ``given`` parameters."""
    with pytest.raises(InvalidTask) as caught:
        parse_simulation_params({"num_particles": 100, "num_steps": 1000, **given})
    return caught.value.field


@pytest.mark.parametrize(("given", "field"), [
    ({"sample_every": 0}, "parameters.sample_every"),
    ({"num_steps": 100_000, "sample_every": 9}, "parameters.sample_every"),  # 11,112 samples
    ({"snapshot_every": 10}, "parameters.snapshot_every"),  # 101 snapshots
    ({"num_particles": 150_000, "snapshot_every": 1000}, "parameters.snapshot_every"),  # 4.6 MiB
    ({"rdf_bins": 1001}, "parameters.rdf_bins"),
    ({"rdf_bins": 50, "rdf_max_distance": 7.1}, "parameters.rdf_max_distance"),  # L/2 = 7.07
    ({"rdf_max_distance": 3.0}, "parameters.rdf_max_distance"),  # without rdf_bins
    ({"num_particles": 200_000, "rdf_bins": 10, "rdf_max_distance": 20.0},
     "parameters.rdf_max_distance"),  # 6e7 pairs per configuration
    ({"thermostat_every": 5}, "parameters.thermostat_every"),  # without a temperature
    ({"thermostat_temperature": -1.0}, "parameters.thermostat_temperature"),
    ({"threads": 0}, "parameters.threads"),
])
def test_observables_over_their_limits_are_refused_naming_the_key(
        given: dict[str, Any], field: str) -> None:
    assert field_of_error(**given) == field


def test_observables_at_their_limits_are_accepted() -> None:
    params = parse_simulation_params({"num_particles": 60_000, "num_steps": 99_990,
                                      "sample_every": 10, "snapshot_every": 99_990,
                                      "rdf_bins": 1000})  # 10,000 samples, 2 x 0.96 MB
    assert params.snapshot_every == 99_990
    assert params.rdf_range == 5.0
    assert math.isclose(SimulationParams(num_particles=50, num_steps=1).rdf_range, 5.0)
