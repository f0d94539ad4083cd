"""Simulation parameters are checked against the spec's table, naming the key at fault."""

from __future__ import annotations

import math

import pytest

from elastic.errors import InvalidTask
from elastic.kernels.memory import estimate_memory_mb
from elastic.kernels.params import SimulationParams, parse_simulation_params

VALID = {"num_particles": 100, "num_steps": 10}


def field_of_error(parameters: object) -> str | None:
    """The field named by the InvalidTask that parsing ``parameters`` raises."""
    with pytest.raises(InvalidTask) as caught:
        parse_simulation_params(parameters)
    return caught.value.field


def test_defaults_are_applied_to_the_optional_keys() -> None:
    assert parse_simulation_params(VALID) == SimulationParams(
        num_particles=100, num_steps=10, seed=0, density=0.5, temperature=1.0, dt=0.005,
        cutoff=2.5)


def test_every_key_can_be_given() -> None:
    params = parse_simulation_params({**VALID, "seed": 2**63 - 1, "density": 1, "temperature": 0,
                                      "dt": 0.02, "cutoff": 3.0})
    assert params.seed == 2**63 - 1
    assert params.density == 1.0 and isinstance(params.density, float)
    assert params.box_length == math.sqrt(100 / 1.0)


@pytest.mark.parametrize("missing", ["num_particles", "num_steps"])
def test_a_missing_required_key_is_named(missing: str) -> None:
    parameters = {key: value for key, value in VALID.items() if key != missing}
    assert field_of_error(parameters) == f"parameters.{missing}"


def test_an_unknown_key_is_named() -> None:
    assert field_of_error({**VALID, "particles": 5}) == "parameters.particles"


@pytest.mark.parametrize(("key", "value"), [
    ("num_particles", "100"),
    ("num_particles", 100.0),
    ("num_steps", None),
    ("seed", 1.5),
    ("density", "0.5"),
    ("dt", [0.01]),
])
def test_a_value_of_the_wrong_type_is_named(key: str, value: object) -> None:
    assert field_of_error({**VALID, key: value}) == f"parameters.{key}"


@pytest.mark.parametrize("key", ["num_particles", "num_steps", "seed", "density", "temperature",
                                 "dt", "cutoff"])
def test_a_bool_is_not_a_number(key: str) -> None:
    assert field_of_error({**VALID, key: True}) == f"parameters.{key}"


@pytest.mark.parametrize(("key", "value"), [
    ("num_particles", 0),
    ("num_particles", 200_001),
    ("num_steps", -1),
    ("num_steps", 100_000_001),
    ("seed", -1),
    ("seed", 2**63),
    ("density", 0.04),
    ("density", 1.21),
    ("temperature", -0.1),
    ("temperature", 100.5),
    ("dt", 0.0),
    ("dt", 0.03),
    ("cutoff", 0.99),
    ("density", math.nan),
    ("dt", math.inf),
])
def test_a_value_out_of_range_is_named(key: str, value: object) -> None:
    assert field_of_error({**VALID, key: value}) == f"parameters.{key}"


def test_a_cutoff_beyond_half_the_box_is_refused() -> None:
    # L = sqrt(20 / 0.5) = 6.32, so L/2 = 3.16 < 3.5.
    with pytest.raises(InvalidTask) as caught:
        parse_simulation_params({"num_particles": 20, "num_steps": 1, "cutoff": 3.5})
    assert caught.value.field == "parameters.cutoff"
    assert "L/2 = 3.16228" in caught.value.message


def test_the_default_cutoff_needs_a_box_of_at_least_5() -> None:
    assert field_of_error({"num_particles": 12, "num_steps": 1}) == "parameters.cutoff"
    assert parse_simulation_params({"num_particles": 13, "num_steps": 1}).cutoff == 2.5


def test_parameters_must_be_an_object() -> None:
    assert field_of_error([("num_particles", 5)]) == "parameters"


def test_the_memory_estimate_grows_with_particles_and_differs_by_algorithm() -> None:
    assert estimate_memory_mb(200_000, "cython") > estimate_memory_mb(1000, "cython")
    assert estimate_memory_mb(200_000, "python") > estimate_memory_mb(200_000, "cython")
    assert estimate_memory_mb(1000, "numpy") > estimate_memory_mb(1000, "cython")
