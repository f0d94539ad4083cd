"""The parameters of a particle simulation: parsing and validation.

The table of keys, defaults and ranges is the one in specs/particles.md, plus the
optional observables, thermostat and thread count (README "Simulations and their
speed"). Every error is an ``InvalidTask`` whose field is ``parameters.<key>``, raised
before any work starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from elastic.errors import InvalidTask
from elastic.kernels.codec import float32_text_length

MAX_PARTICLES = 200_000
MAX_STEPS = 100_000_000
MAX_SAMPLES = 10_000
MAX_SNAPSHOTS = 20
MAX_SNAPSHOT_TEXT_BYTES = 2 * 2**20
MAX_RDF_BINS = 1000
# Pairs one g(r) configuration may measure (about a second of numpy work).
MAX_RDF_PAIRS = 20_000_000
DEFAULT_RDF_MAX_DISTANCE = 5.0
DEFAULT_THERMOSTAT_EVERY = 10
MAX_THREADS = 64


@dataclass(frozen=True)
class _Rule:
    """How one key is checked: its type, its closed range and its default.

    A key with no default is required, unless ``is_optional`` (then None means "off").
    """

    kind: type
    low: float
    high: float
    default: int | float | None = None
    high_text: str = ""
    is_optional: bool = False

    def describe_range(self) -> str:
        """The range as the error messages say it."""
        return f"from {self.low} to {self.high_text or self.high}"


_RULES: dict[str, _Rule] = {
    "num_particles": _Rule(int, 1, MAX_PARTICLES),
    "num_steps": _Rule(int, 0, MAX_STEPS),
    "seed": _Rule(int, 0, 2**63 - 1, 0),
    "density": _Rule(float, 0.05, 1.2, 0.5),
    "temperature": _Rule(float, 0.0, 100.0, 1.0),
    "dt": _Rule(float, 1e-6, 0.02, 0.005),
    "cutoff": _Rule(float, 1.0, math.inf, 2.5, high_text="L/2"),
    "sample_every": _Rule(int, 1, MAX_STEPS, is_optional=True),
    "snapshot_every": _Rule(int, 1, MAX_STEPS, is_optional=True),
    "thermostat_temperature": _Rule(float, 0.0, 100.0, is_optional=True),
    "thermostat_every": _Rule(int, 1, MAX_STEPS, DEFAULT_THERMOSTAT_EVERY),
    "rdf_bins": _Rule(int, 1, MAX_RDF_BINS, is_optional=True),
    "rdf_max_distance": _Rule(float, 0.0, math.inf, high_text="L/2", is_optional=True),
    "threads": _Rule(int, 1, MAX_THREADS, 1),
}


@dataclass(frozen=True, kw_only=True)
class SimulationParams:
    """Validated parameters of one Lennard-Jones run (reduced units).

    ``sample_every``, ``snapshot_every``, ``thermostat_temperature`` and ``rdf_bins``
    are None when off; ``rdf_max_distance`` is None for its default
    (``rdf_range``). ``thermostat_every`` only matters with a thermostat.
    """

    num_particles: int
    num_steps: int
    seed: int = 0
    density: float = 0.5
    temperature: float = 1.0
    dt: float = 0.005
    cutoff: float = 2.5
    sample_every: int | None = None
    snapshot_every: int | None = None
    thermostat_temperature: float | None = None
    thermostat_every: int = DEFAULT_THERMOSTAT_EVERY
    rdf_bins: int | None = None
    rdf_max_distance: float | None = None
    threads: int = 1

    @property
    def box_length(self) -> float:
        """The side of the periodic box, ``L = sqrt(N / rho)``."""
        return math.sqrt(self.num_particles / self.density)

    @property
    def rdf_range(self) -> float:
        """The largest distance g(r) covers: ``rdf_max_distance``, or min(5, L/2)."""
        if self.rdf_max_distance is not None:
            return self.rdf_max_distance
        return min(DEFAULT_RDF_MAX_DISTANCE, self.box_length / 2)

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
    values = {key: _check_value(key, rule, parameters.get(key)) for key, rule in _RULES.items()}
    params = SimulationParams(**values)
    _check_cutoff(params)
    _check_companions(parameters)
    _check_observables(params)
    return params


def _check_companions(parameters: Mapping[str, Any]) -> None:
    """A key that only tunes another one needs that other one."""
    for key, needed in (("thermostat_every", "thermostat_temperature"),
                        ("rdf_max_distance", "rdf_bins")):
        if parameters.get(key) is not None and parameters.get(needed) is None:
            raise InvalidTask(f"only works with {needed}", field=f"parameters.{key}")


def _check_value(key: str, rule: _Rule, value: object) -> int | float | None:
    """One value, type- and range-checked; ints are accepted where floats are."""
    field = f"parameters.{key}"
    wanted = "an integer" if rule.kind is int else "a number"
    if value is None:
        if rule.default is None and not rule.is_optional:
            raise InvalidTask(f"is required ({wanted} {rule.describe_range()})", field=field)
        return rule.default
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


def sample_count(num_steps: int, every: int | None) -> int:
    """How many of steps 0, every, 2 every, ... <= num_steps there are (0 when off)."""
    return 0 if every is None else num_steps // every + 1


def snapshot_text_bytes(params: SimulationParams) -> int:
    """The base64 text all the snapshots of a run take (positions and speeds)."""
    count = params.num_particles
    each = float32_text_length(2 * count) + float32_text_length(count)
    return sample_count(params.num_steps, params.snapshot_every) * each


def rdf_pairs_per_configuration(params: SimulationParams) -> float:
    """About how many pairs one g(r) measurement finds (uniform density)."""
    count = params.num_particles
    area_fraction = min(1.0, math.pi * params.rdf_range**2 / params.box_length**2)
    return count * (count - 1) / 2 * area_fraction


def _check_observables(params: SimulationParams) -> None:
    """Samples, snapshots and g(r) must stay small enough to send and cheap enough to take."""
    samples = sample_count(params.num_steps, params.sample_every)
    if samples > MAX_SAMPLES:
        raise InvalidTask(f"gives {samples} samples (num_steps / sample_every + 1), over the "
                          f"limit of {MAX_SAMPLES}: sample less often", field="parameters.sample_every")
    snapshots = sample_count(params.num_steps, params.snapshot_every)
    if snapshots > MAX_SNAPSHOTS:
        raise InvalidTask(f"gives {snapshots} snapshots (num_steps / snapshot_every + 1), over "
                          f"the limit of {MAX_SNAPSHOTS}", field="parameters.snapshot_every")
    if snapshot_text_bytes(params) > MAX_SNAPSHOT_TEXT_BYTES:
        raise InvalidTask(f"{snapshots} snapshot(s) of {params.num_particles} particles take "
                          f"{snapshot_text_bytes(params) / 2**20:.1f} MiB, over the limit of "
                          f"{MAX_SNAPSHOT_TEXT_BYTES / 2**20:.0f} MiB: take fewer snapshots "
                          "or use fewer particles", field="parameters.snapshot_every")
    _check_rdf(params)


def _check_rdf(params: SimulationParams) -> None:
    """g(r) reaches at most L/2 and measures a bounded number of pairs each time."""
    distance = params.rdf_max_distance
    if distance is not None and not 0 < distance <= params.box_length / 2:
        raise InvalidTask(f"must be above 0 and at most L/2 = {params.box_length / 2:.6g}, "
                          f"got {distance!r}", field="parameters.rdf_max_distance")
    pairs = rdf_pairs_per_configuration(params)
    if params.rdf_bins is not None and pairs > MAX_RDF_PAIRS:
        raise InvalidTask(f"makes g(r) measure about {pairs:.3g} pairs per configuration, over "
                          f"the limit of {MAX_RDF_PAIRS:.0e}: use a smaller rdf_max_distance",
                          field="parameters.rdf_max_distance")
