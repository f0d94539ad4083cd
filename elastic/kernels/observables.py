"""What a run measures along the way: sampled series, position snapshots and g(r).

Definitions (reduced units, unit masses, k_B = 1, 2-D, N particles in a box of area
A = L^2):

- ``temperature`` T = KE / N: two degrees of freedom per particle, none taken off for
  the conserved momentum, so T at step 0 is the ``temperature`` parameter exactly.
- ``pressure`` P = (KE + W / 2) / A, the virial pressure, with W = sum over pairs
  inside the cutoff of r_ij . f_ij = 24 (2 r^-12 - r^-6), added up by the kernel in
  pair order (no tail correction: the potential is truncated).
- ``momentum_x``, ``momentum_y``: the total momentum, summed exactly.

Samples are taken at steps 0, ``sample_every``, 2 ``sample_every``, ... and snapshots
at the multiples of ``snapshot_every`` the same way. g(r) is averaged over the sampled
configurations, or taken from the final one when there are no samples. Everything here
is computed from the positions and velocities alone, with fixed operation orders, so a
resumed run records exactly what an uninterrupted one does; ``to_checkpoint`` and
``from_checkpoint`` carry it across attempts bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import elastic.kernels.codec as codec
from elastic.kernels.numpy_kernel import close_pair_blocks
from elastic.kernels.params import SimulationParams

SERIES_KEYS = ("step", "kinetic_energy", "potential_energy", "total_energy", "temperature",
               "pressure", "momentum_x", "momentum_y")


def kinetic_energy(velocities: np.ndarray) -> float:
    """``0.5 * sum(v**2)`` (unit masses), summed exactly so any order gives the same bits."""
    return 0.5 * math.fsum((velocities * velocities).ravel().tolist())


def total_momentum(velocities: np.ndarray) -> list[float]:
    """``[px, py]`` (unit masses), summed exactly."""
    return [math.fsum(column) for column in velocities.T.tolist()]


def is_multiple(step: int, every: int | None) -> bool:
    """Whether ``step`` is one of 0, every, 2 every, ... (never when ``every`` is None)."""
    return every is not None and step % every == 0


def steps_to_next_event(params: SimulationParams, step: int) -> int:
    """Steps from ``step`` to the next step where something is measured or done (or the end)."""
    events = [params.sample_every, params.snapshot_every]
    if params.thermostat_temperature is not None:
        events.append(params.thermostat_every)
    following = [every - step % every for every in events if every is not None]
    return min([params.num_steps - step, *following])


@dataclass(kw_only=True)
class Observations:
    """The series, snapshots and g(r) histogram a run has recorded so far."""

    series: dict[str, list[float]] = field(
        default_factory=lambda: {key: [] for key in SERIES_KEYS})
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    rdf_counts: np.ndarray | None = None
    rdf_configurations: int = 0

    def record(self, params: SimulationParams, *, step: int, positions: np.ndarray,
               velocities: np.ndarray, potential_energy: float, virial: float) -> None:
        """Take what is due at ``step`` (the state after that step)."""
        if is_multiple(step, params.sample_every):
            self._sample(params, step=step, velocities=velocities,
                         potential_energy=potential_energy, virial=virial)
        if is_multiple(step, params.snapshot_every):
            self.snapshots.append(snapshot_of(step, positions, velocities))
        takes_rdf = (is_multiple(step, params.sample_every) if params.sample_every is not None
                     else step == params.num_steps)
        if params.rdf_bins is not None and takes_rdf:
            self._add_rdf(params, positions)

    def _sample(self, params: SimulationParams, *, step: int, velocities: np.ndarray,
                potential_energy: float, virial: float) -> None:
        """Append one sample to every series."""
        kinetic = kinetic_energy(velocities)
        momentum_x, momentum_y = total_momentum(velocities)
        values = {
            "step": step, "kinetic_energy": kinetic, "potential_energy": potential_energy,
            "total_energy": kinetic + potential_energy,
            "temperature": kinetic / params.num_particles,
            "pressure": (kinetic + 0.5 * virial) / (params.box_length * params.box_length),
            "momentum_x": momentum_x, "momentum_y": momentum_y,
        }
        for key in SERIES_KEYS:
            self.series[key].append(values[key])

    def _add_rdf(self, params: SimulationParams, positions: np.ndarray) -> None:
        """Add one configuration's pair distances to the g(r) histogram."""
        assert params.rdf_bins is not None
        counts = np.zeros(params.rdf_bins, dtype=np.int64)
        bin_width = params.rdf_range / params.rdf_bins
        for _, _, r2 in close_pair_blocks(positions, box_length=params.box_length,
                                          radius=params.rdf_range):
            bins = np.minimum((np.sqrt(r2) / bin_width).astype(np.intp), params.rdf_bins - 1)
            counts += np.bincount(bins, minlength=params.rdf_bins)
        self.rdf_counts = counts if self.rdf_counts is None else self.rdf_counts + counts
        self.rdf_configurations += 1

    def to_result(self, params: SimulationParams) -> dict[str, Any]:
        """The result fields of what was asked: ``series``, ``snapshots``, ``rdf``."""
        result: dict[str, Any] = {}
        if params.sample_every is not None:
            result["series"] = {key: list(values) for key, values in self.series.items()}
        if params.snapshot_every is not None:
            result["box_length"] = params.box_length
            result["snapshots"] = list(self.snapshots)
        if params.rdf_bins is not None:
            result["rdf"] = radial_distribution(params, self.rdf_counts,
                                                configurations=self.rdf_configurations)
        return result

    def to_checkpoint(self) -> dict[str, Any]:
        """A JSON-ready, exact and compact copy."""
        series = {key: codec.encode_array(np.array(values, dtype=np.int64 if key == "step"
                                                   else np.float64))
                  for key, values in self.series.items()}
        counts = None if self.rdf_counts is None else codec.encode_array(self.rdf_counts)
        return {"series": series, "snapshots": self.snapshots, "rdf_counts": counts,
                "rdf_configurations": self.rdf_configurations}

    @classmethod
    def from_checkpoint(cls, state: Mapping[str, Any] | None) -> Observations:
        """What ``to_checkpoint`` saved (nothing recorded for a checkpoint without it).

        Raises:
            ValueError, KeyError, TypeError: ``state`` is not such a copy.
        """
        if state is None:
            return cls()
        series = {key: codec.decode_array(state["series"][key],
                                          dtype="<i8" if key == "step" else "<f8").tolist()
                  for key in SERIES_KEYS}
        counts = state["rdf_counts"]
        return cls(series=series, snapshots=list(state["snapshots"]),
                   rdf_counts=None if counts is None else codec.decode_array(counts, dtype="<i8"),
                   rdf_configurations=int(state["rdf_configurations"]))


def snapshot_of(step: int, positions: np.ndarray, velocities: np.ndarray) -> dict[str, Any]:
    """One snapshot in the result format: float32 positions and speeds, base64."""
    speeds = np.sqrt(np.einsum("ij,ij->i", velocities, velocities))
    return {"step": step, "encoding": codec.SNAPSHOT_ENCODING,
            "positions": codec.encode_float32(positions), "speeds": codec.encode_float32(speeds)}


def radial_distribution(params: SimulationParams, counts: np.ndarray | None, *,
                        configurations: int) -> dict[str, list[float]]:
    """g(r) at the bin centres: pair counts over those of an ideal gas at the same density."""
    assert params.rdf_bins is not None
    edges = np.linspace(0.0, params.rdf_range, params.rdf_bins + 1)
    count = params.num_particles
    pairs = count * (count - 1) / 2
    shell_fraction = math.pi * np.diff(edges**2) / params.box_length**2
    expected = configurations * pairs * shell_fraction
    found = np.zeros(params.rdf_bins) if counts is None else counts.astype(np.float64)
    g = np.divide(found, expected, out=np.zeros_like(found), where=expected > 0)
    return {"r": (0.5 * (edges[1:] + edges[:-1])).tolist(), "g": g.tolist()}
