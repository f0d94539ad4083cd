"""The vectorised kernel: python_kernel's arithmetic, done on whole arrays of listed pairs.

Same functions, signatures and ``Workspace`` as ``python_kernel``. The Verlet list
(pairs i < j closer than cutoff + skin, sorted by i then j) is built from cell lists
with array operations and kept between calls. Each force pass measures every listed
pair at once; pairs beyond the cutoff get a force and an energy of exactly 0.0, which
leave every sum unchanged (no sum here is ever -0.0). Forces are added with
``numpy.add.at`` and energies with ``numpy.cumsum``, both of which add one element
after another in pair order: every operation is the reference's, in the reference's
order, so the results match python_kernel bit for bit (the spec asks only for 1e-9
relative).

The workspace keeps every per-pair and per-particle array between steps and writes
into them with ``out=``, so a step allocates nothing: its speed does not depend on what
the process allocated and freed before (fresh memory costs a page fault per 4 KiB).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from elastic.kernels.python_kernel import (
    DEFAULT_SKIN_LENGTH,
    ROUNDING_MARGIN,
    cells_per_side,
    lj_energy_shift,
)

# About how many candidate pairs are gathered at once while searching for close pairs.
BUILD_BLOCK_CANDIDATES = 2**16  # arrays of a few hundred KiB: cache-sized, reused by malloc
CELL_OFFSETS = [(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


class _PairArrays:
    """The listed pairs and every per-pair scratch array, kept between list builds.

    Arrays are allocated with room to spare and the list uses their first ``count``
    elements, so a rebuild writes into memory the process already has.
    """

    def __init__(self) -> None:
        self._capacity = -1
        self.assign([])

    def assign(self, blocks: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Hold the pairs of ``blocks`` (i and j arrays, in pair order)."""
        count = sum(len(first) for first, _ in blocks)
        if count > self._capacity:
            self._allocate(count + count // 4 + 64)
        self._set_views(count)
        offset = 0
        for first, second in blocks:
            stop = offset + len(first)
            self.first[offset:stop] = first
            self.second[offset:stop] = second
            offset = stop

    def _allocate(self, capacity: int) -> None:
        """New arrays for up to ``capacity`` pairs."""
        self._capacity = capacity
        self._indices = np.empty((2, capacity), dtype=np.intp)
        self._pairs_by_two = np.empty((2, capacity, 2))
        self._values = np.empty((5, capacity))
        self._outside = np.empty(capacity, dtype=bool)

    def _set_views(self, count: int) -> None:
        """Point the named arrays at the first ``count`` pairs."""
        self.first, self.second = self._indices[0, :count], self._indices[1, :count]
        self.delta, self.work = self._pairs_by_two[0, :count], self._pairs_by_two[1, :count]
        self.r2, self.inv_r2, self.inv_r6, self.magnitude, self.term = self._values[:, :count]
        self.outside = self._outside[:count]


class Workspace:
    """The Verlet list, its scratch arrays and the count of pairs evaluated."""

    def __init__(self, *, threads: int = 1, skin: float = DEFAULT_SKIN_LENGTH) -> None:
        if threads != 1:
            raise ValueError("the numpy kernel runs on one thread")
        if not skin > 0:
            raise ValueError(f"skin must be positive, got {skin!r}")
        self.skin = skin
        self.pair_evaluations = 0
        self.virial = math.nan
        self.list_builds = 0
        self.pairs = _PairArrays()
        self._particles = np.empty((4, 0, 2))
        self._moved_sq = np.empty(0)
        self._built_for: tuple[int, float, float] | None = None

    @property
    def step_buffer(self) -> np.ndarray:
        """An (N, 2) scratch array for the integrator."""
        return self._particles[0]

    def refresh(self, positions: np.ndarray, *, box_length: float, cutoff: float) -> None:
        """Rebuild the list if the box changed or a particle moved over half the skin."""
        shape = (len(positions), box_length, cutoff)
        limit = 0.5 * self.skin - ROUNDING_MARGIN * (box_length + cutoff)
        if shape == self._built_for and not self._has_moved_too_far(
                positions, box_length=box_length, limit=limit):
            return
        self.pairs.assign(list(close_pairs_in_order(positions, box_length=box_length,
                                                    radius=cutoff + self.skin)))
        if self._particles.shape[1] != len(positions):
            self._particles = np.empty((4, len(positions), 2))
            self._moved_sq = np.empty(len(positions))
        np.copyto(self._particles[1], positions)
        self._built_for = shape
        self.list_builds += 1

    def _has_moved_too_far(self, positions: np.ndarray, *, box_length: float,
                           limit: float) -> bool:
        """Whether any particle is ``limit`` or more from where it was (minimum image)."""
        built, moved, scratch = self._particles[1], self._particles[2], self._particles[3]
        np.subtract(positions, built, out=moved)
        np.abs(moved, out=moved)
        np.minimum(moved, np.subtract(box_length, moved, out=scratch), out=moved)
        np.multiply(moved, moved, out=moved)
        np.add(moved[:, 0], moved[:, 1], out=self._moved_sq)
        return bool(self._moved_sq.max(initial=0.0) >= limit * limit)


@np.errstate(all="ignore")  # a blown-up state gives inf and nan, as the other kernels do
def compute_forces(positions: np.ndarray, forces: np.ndarray, *, box_length: float,
                   cutoff: float, workspace: Workspace | None = None) -> float:
    """Fill ``forces`` with F(positions) and return the potential energy."""
    workspace = workspace or Workspace()
    workspace.refresh(positions, box_length=box_length, cutoff=cutoff)
    return _pair_forces(positions, forces, workspace, box_length=box_length, cutoff=cutoff,
                        with_energy=True)


@np.errstate(all="ignore")
def integrate_steps(positions: np.ndarray, velocities: np.ndarray, forces: np.ndarray, *,
                    box_length: float, cutoff: float, dt: float, num_steps: int,
                    workspace: Workspace | None = None) -> float:
    """Advance ``num_steps`` velocity-Verlet steps in place; return the final potential."""
    workspace = workspace or Workspace()
    half_dt = 0.5 * dt
    energy = math.nan
    workspace.refresh(positions, box_length=box_length, cutoff=cutoff)
    for step in range(num_steps):
        kick = workspace.step_buffer
        velocities += np.multiply(half_dt, forces, out=kick)
        positions += np.multiply(dt, velocities, out=kick)
        np.divide(positions, box_length, out=kick)
        np.floor(kick, out=kick)
        kick *= box_length
        positions -= kick
        workspace.refresh(positions, box_length=box_length, cutoff=cutoff)
        energy = _pair_forces(positions, forces, workspace, box_length=box_length,
                              cutoff=cutoff, with_energy=step == num_steps - 1)
        velocities += np.multiply(half_dt, forces, out=workspace.step_buffer)
    return energy


def _pair_forces(positions: np.ndarray, forces: np.ndarray, workspace: Workspace, *,
                 box_length: float, cutoff: float, with_energy: bool) -> float:
    """Fill ``forces`` from the listed pairs; the potential energy, or nan if not asked."""
    pairs = workspace.pairs
    delta, work = pairs.delta, pairs.work
    points = as_complex(positions)  # one complex per particle: 1-D gathers are fast
    np.take(points, pairs.first, out=as_complex(delta))
    np.subtract(as_complex(delta), np.take(points, pairs.second, out=as_complex(work)),
                out=as_complex(delta))
    _minimum_image(delta, work, box_length)
    np.multiply(delta[:, 0], delta[:, 0], out=pairs.r2)
    pairs.r2 += np.multiply(delta[:, 1], delta[:, 1], out=pairs.term)
    np.greater_equal(pairs.r2, cutoff * cutoff, out=pairs.outside)
    workspace.pair_evaluations += len(pairs.r2) - int(np.count_nonzero(pairs.outside))
    np.divide(1.0, pairs.r2, out=pairs.inv_r2)
    np.multiply(pairs.inv_r2, pairs.inv_r2, out=pairs.inv_r6)
    pairs.inv_r6 *= pairs.inv_r2
    _lj_strength(pairs)
    np.copyto(pairs.magnitude, 0.0, where=pairs.outside)
    if with_energy:
        workspace.virial = _sum_in_order(pairs.magnitude, pairs.term)
    pairs.magnitude *= pairs.inv_r2
    pair_forces = np.multiply(pairs.magnitude[:, None], delta, out=work)
    # Each particle gets -f from its pairs (i, k), i < k, in the order of i, and only
    # then +f from its pairs (k, j), in the order of j: the reference's order.
    forces.fill(0.0)
    np.subtract.at(as_complex(forces), pairs.second, as_complex(pair_forces))
    np.add.at(as_complex(forces), pairs.first, as_complex(pair_forces))
    return _pair_energy(pairs, cutoff) if with_energy else math.nan


def as_complex(pairs_of_floats: np.ndarray) -> np.ndarray:
    """An (N, 2) C-contiguous float64 array seen as N complex numbers (no copy)."""
    return pairs_of_floats.view(np.complex128).reshape(-1)


def _lj_strength(pairs: _PairArrays) -> None:
    """``magnitude = 24 (2 r^-12 - r^-6)`` (r . f), operation for operation as python_kernel."""
    magnitude, inv_r6 = pairs.magnitude, pairs.inv_r6
    np.multiply(2.0, inv_r6, out=magnitude)
    magnitude *= inv_r6
    magnitude -= inv_r6
    np.multiply(24.0, magnitude, out=magnitude)


def _pair_energy(pairs: _PairArrays, cutoff: float) -> float:
    """The sum, in pair order, of the listed pairs' energies (0.0 beyond the cutoff)."""
    term = pairs.term
    np.multiply(pairs.inv_r6, pairs.inv_r6, out=term)
    term -= pairs.inv_r6
    np.multiply(4.0, term, out=term)
    term -= lj_energy_shift(cutoff)
    np.copyto(term, 0.0, where=pairs.outside)
    return _sum_in_order(term, term)


def _sum_in_order(values: np.ndarray, scratch: np.ndarray) -> float:
    """``((0 + v0) + v1) + ...``: numpy.cumsum adds one element after another."""
    if len(values) == 0:
        return 0.0
    return float(np.cumsum(values, out=scratch)[-1])


def _minimum_image(delta: np.ndarray, work: np.ndarray, box_length: float) -> None:
    """``delta - L * floor(delta / L + 0.5)``, in place (``work`` is scratch)."""
    np.divide(delta, box_length, out=work)
    work += 0.5
    np.floor(work, out=work)
    work *= box_length
    delta -= work


def close_pairs_in_order(positions: np.ndarray, *, box_length: float,
                         radius: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks of (i, j), i < j, of the pairs closer than ``radius``; all in pair order."""
    count = len(positions)
    for first, second, _ in close_pair_blocks(positions, box_length=box_length, radius=radius):
        keys = first * count + second
        keys.sort()
        yield keys // count, keys % count


def close_pair_blocks(positions: np.ndarray, *, box_length: float,
                      radius: float) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Blocks of (i, j, r^2) for the pairs i < j closer than ``radius`` (minimum image).

    Blocks hold ascending ranges of i; inside a block pairs are in no set order.
    Candidates come from cells of side at least ``radius`` (all pairs when fewer than
    three fit across the box); a block gathers about ``BUILD_BLOCK_CANDIDATES`` of
    them, so memory stays bounded for any radius.
    """
    side = cells_per_side(box_length, radius)
    points = as_complex(np.ascontiguousarray(positions, dtype=np.float64))
    blocks = (_all_pair_candidates(len(positions)) if side < 3
              else _cell_candidates(positions, side=side, box_length=box_length))
    for first, second in blocks:
        delta = (points[first] - points[second]).view(np.float64).reshape(-1, 2)
        _minimum_image(delta, np.empty_like(delta), box_length)
        r2 = np.einsum("ij,ij->i", delta, delta)
        close = r2 < radius * radius
        yield first[close], second[close], r2[close]


def _all_pair_candidates(count: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every pair i < j, in blocks of rows."""
    rows = max(1, BUILD_BLOCK_CANDIDATES // max(count, 1))
    for start in range(0, count, rows):
        block = np.arange(start, min(start + rows, count))
        later = count - 1 - block
        yield np.repeat(block, later), _concatenated_ranges(block + 1, later)


def _cell_candidates(positions: np.ndarray, *, side: int,
                     box_length: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pairs i < j in the same or neighbouring cells, block of i by block of i."""
    count = len(positions)
    cell_xy = np.clip((positions * (side / box_length)).astype(np.intp), 0, side - 1)
    cell = cell_xy[:, 0] + side * cell_xy[:, 1]
    by_cell = np.argsort(cell, kind="stable")
    cell_sizes = np.bincount(cell, minlength=side * side)
    cell_starts = np.cumsum(cell_sizes) - cell_sizes
    shifts = np.array(CELL_OFFSETS)
    rows = max(1, BUILD_BLOCK_CANDIDATES * side * side // (len(CELL_OFFSETS) * count))
    for start in range(0, count, rows):
        block = np.arange(start, min(start + rows, count))
        around = (cell_xy[block, None, :] + shifts) % side  # (particle, offset, axis)
        other = (around[:, :, 0] + side * around[:, :, 1]).reshape(-1)
        sizes = cell_sizes[other]
        first = np.repeat(np.repeat(block, len(CELL_OFFSETS)), sizes)
        second = by_cell[_concatenated_ranges(cell_starts[other], sizes)]
        later = second > first
        yield first[later], second[later]


def _concatenated_ranges(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """``range(starts[0], starts[0] + sizes[0])``, then the next range, ... as one array."""
    run_offsets = np.cumsum(sizes) - sizes
    return np.repeat(starts - run_offsets, sizes) + np.arange(run_offsets[-1] + sizes[-1]
                                                              if len(sizes) else 0)
