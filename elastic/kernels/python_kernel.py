"""The reference kernel: plain Python loops, in exactly the order specs/particles.md fixes.

Every kernel has the same two functions and a ``Workspace`` class. The functions work
in place on C-contiguous float64 arrays of shape (N, 2) and return the potential energy:

- ``compute_forces(positions, forces, *, box_length, cutoff, workspace=None)`` fills
  ``forces``.
- ``integrate_steps(positions, velocities, forces, *, box_length, cutoff, dt, num_steps,
  workspace=None)`` advances ``num_steps`` velocity-Verlet steps; ``forces`` must hold
  F(positions) on entry and holds it again on return. It returns nan when ``num_steps``
  is 0.

``Workspace(threads=1, skin=DEFAULT_SKIN_LENGTH)`` keeps a Verlet neighbour list between
calls, built from cell lists: for each particle i, the particles j > i closer than
``cutoff + skin``, ascending. It is rebuilt when a particle has moved more than half the
skin since the last build, so every pair closer than the cutoff is always in it. The
forces visit the listed pairs in the spec's order (i ascending, then j ascending) and
pairs beyond the cutoff add nothing, so the sums are bit for bit those of the all-pairs
loop. ``workspace.pair_evaluations`` counts the pairs inside the cutoff whose force was
computed (every force pass, the initial one included), and ``workspace.virial`` is the
pair virial ``sum r_ij . f_ij`` of the last pass that computed the energy (the one the
function returned); without a workspace a call builds a list of its own. This kernel's
workspace also has ``interrupt``, called every few thousand particles inside a step.

The arithmetic is written so that the other kernels can repeat it operation for
operation: ``cython_kernel`` and ``numpy_kernel`` give bit-identical results.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

DEFAULT_SKIN_LENGTH = 0.3
# Positions and distances carry rounding errors of about box_length * 2**-52: the
# rebuild test keeps this much margin (relative to the box) so no pair is ever missed.
ROUNDING_MARGIN = 1e-9
# Particles between two calls of a workspace's ``interrupt`` (a few ms of this kernel).
INTERRUPT_EVERY = 2048

Coordinates = list[float]


class PairSums(NamedTuple):
    """What one force pass adds up."""

    fx: Coordinates
    fy: Coordinates
    energy: float
    virial: float
    evaluated: int


class Workspace:
    """A Verlet neighbour list kept between calls, and the count of pairs evaluated."""

    def __init__(self, *, threads: int = 1, skin: float = DEFAULT_SKIN_LENGTH) -> None:
        if threads != 1:
            raise ValueError("the python kernel runs on one thread")
        if not skin > 0:
            raise ValueError(f"skin must be positive, got {skin!r}")
        self.skin = skin
        # Called every INTERRUPT_EVERY particles inside a step; it raises to stop the run
        # (a step of this kernel at 200,000 particles lasts seconds, a cancel must not).
        self.interrupt: Callable[[], None] = _carry_on
        self.pair_evaluations = 0
        self.virial = math.nan
        self.list_builds = 0
        self.neighbours: list[list[int]] = []
        self._built_xs: Coordinates = []
        self._built_ys: Coordinates = []
        self._built_for: tuple[int, float, float] | None = None

    def refresh(self, xs: Coordinates, ys: Coordinates, *, box_length: float,
                cutoff: float) -> None:
        """Rebuild the list if the box changed or a particle moved over half the skin."""
        shape = (len(xs), box_length, cutoff)
        if shape == self._built_for and not has_moved_too_far(
                xs, ys, self._built_xs, self._built_ys, box_length=box_length,
                limit=0.5 * self.skin - ROUNDING_MARGIN * (box_length + cutoff)):
            return
        self.neighbours = build_neighbour_list(xs, ys, box_length=box_length,
                                               radius=cutoff + self.skin,
                                               interrupt=self.interrupt)
        self._built_xs, self._built_ys = list(xs), list(ys)
        self._built_for = shape
        self.list_builds += 1


def compute_forces(positions: np.ndarray, forces: np.ndarray, *, box_length: float,
                   cutoff: float, workspace: Workspace | None = None) -> float:
    """Fill ``forces`` with F(positions) and return the potential energy."""
    workspace = workspace or Workspace()
    xs, ys = positions[:, 0].tolist(), positions[:, 1].tolist()
    workspace.refresh(xs, ys, box_length=box_length, cutoff=cutoff)
    sums = pair_forces(xs, ys, workspace.neighbours, box_length=box_length, cutoff=cutoff,
                       interrupt=workspace.interrupt)
    workspace.pair_evaluations += sums.evaluated
    workspace.virial = sums.virial
    forces[:, 0] = sums.fx
    forces[:, 1] = sums.fy
    return sums.energy


def integrate_steps(positions: np.ndarray, velocities: np.ndarray, forces: np.ndarray, *,
                    box_length: float, cutoff: float, dt: float, num_steps: int,
                    workspace: Workspace | None = None) -> float:
    """Advance ``num_steps`` velocity-Verlet steps in place; return the final potential."""
    workspace = workspace or Workspace()
    xs, ys = positions[:, 0].tolist(), positions[:, 1].tolist()
    vx, vy = velocities[:, 0].tolist(), velocities[:, 1].tolist()
    fx, fy = forces[:, 0].tolist(), forces[:, 1].tolist()
    half_dt = 0.5 * dt
    energy = math.nan
    for _ in range(num_steps):
        for k in range(len(xs)):
            vx[k] += half_dt * fx[k]
            vy[k] += half_dt * fy[k]
            xs[k] = wrap_coordinate(xs[k] + dt * vx[k], box_length)
            ys[k] = wrap_coordinate(ys[k] + dt * vy[k], box_length)
        workspace.refresh(xs, ys, box_length=box_length, cutoff=cutoff)
        fx, fy, energy, workspace.virial, evaluated = pair_forces(
            xs, ys, workspace.neighbours, box_length=box_length, cutoff=cutoff,
            interrupt=workspace.interrupt)
        workspace.pair_evaluations += evaluated
        for k in range(len(xs)):
            vx[k] += half_dt * fx[k]
            vy[k] += half_dt * fy[k]
    positions[:, 0], positions[:, 1] = xs, ys
    velocities[:, 0], velocities[:, 1] = vx, vy
    forces[:, 0], forces[:, 1] = fx, fy
    return energy


def _carry_on() -> None:
    """The interrupt of a run nobody stops."""


def wrap_coordinate(value: float, box_length: float) -> float:
    """Put a coordinate back into [0, L): ``x - L * floor(x / L)``."""
    return value - box_length * math.floor(value / box_length)


def minimum_image(delta: float, box_length: float) -> float:
    """The spec's minimum image of one coordinate difference."""
    return delta - box_length * math.floor(delta / box_length + 0.5)


def pair_forces(xs: Coordinates, ys: Coordinates, neighbours: list[list[int]], *,
                box_length: float, cutoff: float,
                interrupt: Callable[[], None] | None = None) -> PairSums:
    """Forces, potential energy, virial and the number of pairs inside the cutoff.

    Visits the listed pairs i < j in order; ``neighbours[i]`` must hold, ascending,
    every j > i closer than the cutoff (and may hold more). ``interrupt`` is called
    every ``INTERRUPT_EVERY`` particles and may raise to stop.
    """
    interrupt = interrupt or _carry_on
    floor = math.floor
    count = len(xs)
    fx, fy = [0.0] * count, [0.0] * count
    cutoff_sq = cutoff * cutoff
    energy_shift = lj_energy_shift(cutoff)
    energy = 0.0
    virial = 0.0
    evaluated = 0
    for i in range(count):
        if i % INTERRUPT_EVERY == 0:
            interrupt()
        xi, yi = xs[i], ys[i]
        fxi, fyi = fx[i], fy[i]
        for j in neighbours[i]:
            dx = xi - xs[j]
            dx -= box_length * floor(dx / box_length + 0.5)
            dy = yi - ys[j]
            dy -= box_length * floor(dy / box_length + 0.5)
            r2 = dx * dx + dy * dy
            if r2 < cutoff_sq:
                inv_r2 = 1.0 / r2
                inv_r6 = inv_r2 * inv_r2 * inv_r2
                strength = 24.0 * (2.0 * inv_r6 * inv_r6 - inv_r6)  # r . f of the pair
                magnitude = strength * inv_r2
                pair_fx = magnitude * dx
                pair_fy = magnitude * dy
                fxi += pair_fx
                fyi += pair_fy
                fx[j] -= pair_fx
                fy[j] -= pair_fy
                energy += 4.0 * (inv_r6 * inv_r6 - inv_r6) - energy_shift
                virial += strength
                evaluated += 1
        fx[i], fy[i] = fxi, fyi
    return PairSums(fx, fy, energy, virial, evaluated)


def lj_energy_shift(cutoff: float) -> float:
    """``4 (rc^-12 - rc^-6)``, computed with the same operations as a pair energy."""
    inv_rc2 = 1.0 / (cutoff * cutoff)
    inv_rc6 = inv_rc2 * inv_rc2 * inv_rc2
    return 4.0 * (inv_rc6 * inv_rc6 - inv_rc6)


def cells_per_side(box_length: float, radius: float) -> int:
    """How many cells of side at least ``radius`` (with a rounding margin) fit in the box."""
    return max(1, int(box_length / (radius * (1.0 + ROUNDING_MARGIN))))


def build_neighbour_list(xs: Coordinates, ys: Coordinates, *, box_length: float,
                         radius: float,
                         interrupt: Callable[[], None] | None = None) -> list[list[int]]:
    """For each i, the j > i whose minimum-image distance is below ``radius``, ascending.

    Candidates come from the particle's cell and the eight around it (every j > i when
    fewer than three cells fit across the box, where those would repeat). ``interrupt``
    is called every ``INTERRUPT_EVERY`` particles and may raise to stop.
    """
    interrupt = interrupt or _carry_on
    count = len(xs)
    side = cells_per_side(box_length, radius)
    cells = _sort_into_cells(xs, ys, side=side, box_length=box_length) if side >= 3 else []
    radius_sq = radius * radius
    neighbours = []
    for i in range(count):
        if i % INTERRUPT_EVERY == 0:
            interrupt()
        candidates = (_cell_candidates(i, xs, ys, cells, side=side, box_length=box_length)
                      if side >= 3 else range(i + 1, count))
        close = []
        for j in candidates:
            dx = minimum_image(xs[i] - xs[j], box_length)
            dy = minimum_image(ys[i] - ys[j], box_length)
            if dx * dx + dy * dy < radius_sq:
                close.append(j)
        neighbours.append(close)
    return neighbours


def _sort_into_cells(xs: Coordinates, ys: Coordinates, *, side: int,
                     box_length: float) -> list[list[int]]:
    """The particles of each of the side x side cells, ascending."""
    cells: list[list[int]] = [[] for _ in range(side * side)]
    for k in range(len(xs)):
        cells[_cell_of(xs[k], side, box_length) + side * _cell_of(ys[k], side, box_length)
              ].append(k)
    return cells


def _cell_candidates(i: int, xs: Coordinates, ys: Coordinates, cells: list[list[int]], *,
                     side: int, box_length: float) -> list[int]:
    """The j > i in i's cell and the eight around it, ascending."""
    column, row = _cell_of(xs[i], side, box_length), _cell_of(ys[i], side, box_length)
    return sorted(j for shift_row in (-1, 0, 1) for shift_column in (-1, 0, 1)
                  for j in cells[(column + shift_column) % side
                                 + side * ((row + shift_row) % side)] if j > i)


def _cell_of(coordinate: float, side: int, box_length: float) -> int:
    """The cell index of a coordinate along one axis (clamped: a wrapped x may be -0 or L)."""
    return min(side - 1, max(0, int(coordinate * side / box_length)))


def has_moved_too_far(xs: Coordinates, ys: Coordinates, built_xs: Coordinates,
                      built_ys: Coordinates, *, box_length: float, limit: float) -> bool:
    """Whether any particle is ``limit`` or more from where it was (minimum image)."""
    limit_sq = limit * limit
    half_box = 0.5 * box_length
    for x, y, x0, y0 in zip(xs, ys, built_xs, built_ys, strict=True):
        dx = abs(x - x0)
        dy = abs(y - y0)
        dx = min(dx, box_length - dx) if dx > half_box else dx
        dy = min(dy, box_length - dy) if dy > half_box else dy
        if dx * dx + dy * dy >= limit_sq:
            return True
    return False
