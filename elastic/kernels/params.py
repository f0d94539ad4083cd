"""The parameters of a particle simulation: parsing and validation.

The table of keys, defaults and ranges is the one in specs/particles.md. Every error
is an ``InvalidTask`` whose field is ``parameters.<key>``, raised before any work starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from elastic.errors import InvalidTask

MAX_PARTICLES = 200_000


@dataclass(frozen=True)
class _Rule:
    """How one key is checked: its type, its closed range and its default (None: required)."""

    kind: type
    low: float
    high: float
    default: int | float | None = None
    high_text: str = ""

    def describe_range(self) -> str:
        """The range as the error messages say it."""
        return f"from {self.low} to {self.high_text or self.high}"


_RULES: dict[str, _Rule] = {
    "num_particles": _Rule(int, 1, MAX_PARTICLES),
    "num_steps": _Rule(int, 0, 100_000_000),
    "seed": _Rule(int, 0, 2**63 - 1, 0),
    "density": _Rule(float, 0.05, 1.2, 0.5),
    "temperature": _Rule(float, 0.0, 100.0, 1.0),
    "dt": _Rule(float, 1e-6, 0.02, 0.005),
    "cutoff": _Rule(float, 1.0, math.inf, 2.5, high_text="L/2"),
}


@dataclass(frozen=True, kw_only=True)
class SimulationParams:
    """Validated parameters of one Lennard-Jones run (reduced units)."""

    num_particles: int
    num_steps: int
    seed: int = 0
    density: float = 0.5
    temperature: float = 1.0
    dt: float = 0.005
    cutoff: float = 2.5

    @property
    def box_length(self) -> float:
        """The side of the periodic box, ``L = sqrt(N / rho)``."""
        return math.sqrt(self.num_particles / self.density)

    def as_dict(self) -> dict[str, Any]:
        """The parameters as JSON-ready data (every key, defaults filled in)."""
        return asdict(self)


def parse_simulation_params(parameters: Any) -> SimulationParams:
    """Check ``parameters`` against the spec's table and return them with defaults applied.

    Raises:
        InvalidTask: naming ``parameters`` or ``parameters.<key>``.
    """
    if not isinstance(parameters, Mapping):
        raise InvalidTask(f"must be an object, got {type(parameters).__name__}",
                          field="parameters")
    unknown = sorted(str(key) for key in parameters if key not in _RULES)
    if unknown:
        raise InvalidTask(f"unknown parameter (known: {', '.join(_RULES)})",
                          field=f"parameters.{unknown[0]}")
    values = {key: _check_value(key, rule, parameters.get(key, rule.default))
              for key, rule in _RULES.items()}
    params = SimulationParams(**values)
    _check_cutoff(params)
    return params


def _check_value(key: str, rule: _Rule, value: object) -> int | float:
    """One value, type- and range-checked; ints are accepted where floats are."""
    field = f"parameters.{key}"
    wanted = "an integer" if rule.kind is int else "a number"
    if value is None:
        raise InvalidTask(f"is required ({wanted} {rule.describe_range()})", field=field)
    allowed: tuple[type, ...] = (int,) if rule.kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise InvalidTask(f"must be {wanted}, got {type(value).__name__} {value!r}", field=field)
    if not rule.low <= value <= rule.high:
        raise InvalidTask(f"must be {rule.describe_range()}, got {value!r}", field=field)
    return rule.kind(value)


def _check_cutoff(params: SimulationParams) -> None:
    """The cutoff must not exceed half the box, or minimum image would miss pairs."""
    half_box = params.box_length / 2
    if params.cutoff > half_box:
        raise InvalidTask(
            f"must be at most L/2 = {half_box:.6g} (L = sqrt(num_particles / density)), "
            f"got {params.cutoff!r}: use more particles, a lower density or a smaller cutoff",
            field="parameters.cutoff")
