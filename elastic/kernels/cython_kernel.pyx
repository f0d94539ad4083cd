# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""The compiled kernel: python_kernel's loops in C, bit for bit.

Same functions, signatures and ``Workspace`` as ``python_kernel``, same operation
order, no fast math; setup.py compiles it with ``-ffp-contract=off`` so that no
multiply-add is fused (Python never fuses). The loops run without the GIL, so other
threads (the worker's heartbeat) keep running while it computes.

Two details keep it fast without changing a bit:

- ``exact_floor`` is floor written with a truncating conversion (portable, no SSE4.1
  needed). It equals C's floor for every double except -0.0, where it gives +0.0 as
  Python's integer-valued ``math.floor`` does; no argument here is ever -0.0.
- A coordinate difference with ``|dx| <= L/4`` has ``floor(dx / L + 0.5) == 0``
  exactly (``dx / L`` rounds into [-1/4, 1/4]), so its minimum image is ``dx`` itself
  and the division is skipped.

``Workspace(threads=T)`` with T > 1 (from ``PARALLEL_MIN_PARTICLES`` particles up)
splits the particles into T ranges of i, one per OpenMP thread, and builds the list
and computes forces range by range. A pair whose j lies in a later range ("crossing")
is computed first and stored; each thread then runs the serial loop over its range,
its particles starting from the crossing forces they receive, which come first in
the serial order. Energy and virial are added up in pair order. The result is
bit-identical to one thread, whatever T (without OpenMP the same code runs on one
thread). Particles are numbered along the initial lattice, so crossing pairs are few.
"""

from cython.parallel cimport prange
from libc.math cimport NAN, fabs
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove

import numpy as np

from elastic.kernels.python_kernel import (
    DEFAULT_SKIN_LENGTH,
    ROUNDING_MARGIN,
    cells_per_side,
    lj_energy_shift,
)

# Below this many particles a step is too short to share: the threads would mostly
# wait for each other, so the serial loops run (same bits either way).
PARALLEL_MIN_PARTICLES = 8192
cdef enum:
    MAX_PARTS = 64  # the most threads a list is built with (parameters.threads <= 64)

cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    /* floor(x) by truncation: exact for |x| < 2**52; beyond, x is already an integer
       (or inf, or nan) and is returned as is. -0.0 gives +0.0. */
    static inline double elastic_exact_floor(double x) {
        if (!(fabs(x) < 4503599627370496.0)) return x;
        double t = (double)(int64_t)x;
        return t > x ? t - 1.0 : t;
    }
    """
    double elastic_exact_floor(double x) noexcept nogil


def exact_floor(double[::1] values):
    """``exact_floor`` of every value, as a new float64 array (for tests)."""
    result = np.empty(values.shape[0])
    cdef double[::1] out = result
    cdef Py_ssize_t k
    for k in range(values.shape[0]):
        out[k] = elastic_exact_floor(values[k])
    return result


cdef struct Box:
    double length
    double quarter       # L / 4: below it a difference needs no minimum image
    double cutoff_sq
    double energy_shift


cdef class Workspace:
    """The Verlet list (C arrays), the thread count and the count of pairs evaluated."""

    cdef public double skin
    cdef public int threads
    cdef readonly int active_threads   # threads, or 1 below PARALLEL_MIN_PARTICLES
    cdef public long long pair_evaluations
    cdef public double virial
    cdef public long long list_builds
    cdef Py_ssize_t count
    cdef Py_ssize_t capacity
    cdef double built_box_length
    cdef double built_cutoff
    cdef bint is_built
    cdef double* built_positions
    cdef int64_t* starts          # pairs of i: neighbours[starts[i]:starts[i + 1]]
    cdef int32_t* neighbours      # j > i, ascending for each i
    cdef int32_t* cell_sizes
    cdef int32_t* cell_starts
    cdef int32_t* by_cell
    cdef int32_t* particle_column
    cdef int32_t* particle_row
    cdef Py_ssize_t cell_capacity
    # threads > 1 only. Particles are split into ``parts`` ranges of i, one per thread;
    # a crossing pair has its j in a later range than its i. Its force is computed
    # first and stored (pair_forces, by slot); crossing_first[i] is where i's crossing
    # pairs begin in its list, crossing_into[crossing_starts[j]:crossing_starts[j + 1]]
    # the slots of the crossing pairs into j, i ascending. Energies and virials of every
    # pair are stored when the energy is asked for, and added up in pair order.
    cdef int parts
    cdef double* pair_forces
    cdef double* pair_energies
    cdef double* pair_virials
    cdef int64_t* crossing_first
    cdef int64_t* crossing_starts
    cdef int64_t* crossing_into

    def __cinit__(self, *, int threads=1, double skin=DEFAULT_SKIN_LENGTH):
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if not skin > 0:
            raise ValueError(f"skin must be positive, got {skin!r}")
        self.threads = threads
        self.active_threads = 1
        self.parts = 1
        self.skin = skin
        self.pair_evaluations = 0
        self.virial = NAN
        self.list_builds = 0
        self.is_built = False

    def __dealloc__(self):
        self._release()

    cdef void _release(self) noexcept:
        """Free every array (they are reallocated for a new particle count)."""
        free(self.built_positions)
        free(self.starts)
        free(self.neighbours)
        free(self.cell_sizes)
        free(self.cell_starts)
        free(self.by_cell)
        free(self.particle_column)
        free(self.particle_row)
        free(self.pair_forces)
        free(self.pair_energies)
        free(self.pair_virials)
        free(self.crossing_first)
        free(self.crossing_starts)
        free(self.crossing_into)
        self.built_positions = NULL
        self.starts = NULL
        self.neighbours = NULL
        self.cell_sizes = NULL
        self.cell_starts = NULL
        self.by_cell = NULL
        self.particle_column = NULL
        self.particle_row = NULL
        self.pair_forces = NULL
        self.pair_energies = NULL
        self.pair_virials = NULL
        self.crossing_first = NULL
        self.crossing_starts = NULL
        self.crossing_into = NULL
        self.capacity = 0
        self.cell_capacity = 0
        self.count = 0
        self.is_built = False

    cdef void _size_for(self, Py_ssize_t count, Py_ssize_t cells) except *:
        """Have per-particle arrays for ``count`` particles and ``cells`` cells."""
        if count != self.count:
            self._release()
            self.built_positions = <double*> _allocate(2 * count * sizeof(double))
            self.starts = <int64_t*> _allocate((count + 1) * sizeof(int64_t))
            self.by_cell = <int32_t*> _allocate(count * sizeof(int32_t) + 1)
            self.particle_column = <int32_t*> _allocate(count * sizeof(int32_t) + 1)
            self.particle_row = <int32_t*> _allocate(count * sizeof(int32_t) + 1)
            if self.threads > 1:
                self.crossing_first = <int64_t*> _allocate(count * sizeof(int64_t))
                self.crossing_starts = <int64_t*> _allocate((count + 2) * sizeof(int64_t))
            self.count = count
            self._grow_pairs(8 * count + 64)
        if cells > self.cell_capacity:
            free(self.cell_sizes)
            free(self.cell_starts)
            self.cell_sizes = NULL
            self.cell_starts = NULL
            self.cell_sizes = <int32_t*> _allocate(cells * sizeof(int32_t))
            self.cell_starts = <int32_t*> _allocate(cells * sizeof(int32_t))
            self.cell_capacity = cells

    cdef void _grow_pairs(self, Py_ssize_t capacity) except *:
        """Room for ``capacity`` listed pairs."""
        self.neighbours = <int32_t*> _reallocate(self.neighbours, capacity * sizeof(int32_t))
        if self.threads > 1:
            self.pair_forces = <double*> _reallocate(self.pair_forces,
                                                      2 * capacity * sizeof(double))
            self.pair_energies = <double*> _reallocate(self.pair_energies,
                                                        capacity * sizeof(double))
            self.pair_virials = <double*> _reallocate(self.pair_virials,
                                                       capacity * sizeof(double))
            self.crossing_into = <int64_t*> _reallocate(self.crossing_into,
                                                         capacity * sizeof(int64_t))
        self.capacity = capacity

    cdef void refresh(self, double[:, ::1] positions, double box_length,
                      double cutoff) except *:
        """Rebuild the list if the box changed or a particle moved over half the skin."""
        cdef double limit = 0.5 * self.skin - ROUNDING_MARGIN * (box_length + cutoff)
        if (self.is_built and positions.shape[0] == self.count
                and box_length == self.built_box_length and cutoff == self.built_cutoff
                and not _has_moved_too_far(&positions[0, 0], self.built_positions,
                                           self.count, box_length, limit,
                                           self.active_threads)):
            return
        self.rebuild(positions, box_length, cutoff)

    cdef void rebuild(self, double[:, ::1] positions, double box_length,
                      double cutoff) except *:
        """Build the list of pairs closer than ``cutoff + skin`` from cell lists."""
        cdef Py_ssize_t count = positions.shape[0]
        cdef double radius = cutoff + self.skin
        cdef int side = cells_per_side(box_length, radius)
        self.active_threads = self.threads if count >= PARALLEL_MIN_PARTICLES else 1
        self._size_for(count, <Py_ssize_t> side * side if side >= 3 else 1)
        cdef int parts = min(self.active_threads, MAX_PARTS) if side >= 3 else 1
        cdef Py_ssize_t needed
        while True:
            with nogil:
                needed = _build_list(self, &positions[0, 0], count, box_length,
                                     radius * radius, side, parts)
            if needed <= self.capacity:
                break
            self._grow_pairs(needed + needed // 4)
        self.parts = parts
        if self.active_threads > 1:
            with nogil:
                _index_crossing_pairs(self, count)
        memcpy(self.built_positions, &positions[0, 0], 2 * count * sizeof(double))
        self.built_box_length = box_length
        self.built_cutoff = cutoff
        self.is_built = True
        self.list_builds += 1


cdef void* _allocate(size_t size) except NULL:
    """malloc that raises MemoryError."""
    cdef void* memory = malloc(size if size > 0 else 1)
    if memory == NULL:
        raise MemoryError(f"cannot allocate {size} bytes for the neighbour list")
    return memory


cdef void* _reallocate(void* memory, size_t size) except NULL:
    """realloc that raises MemoryError (the old block stays valid then)."""
    cdef void* grown = realloc(memory, size if size > 0 else 1)
    if grown == NULL:
        raise MemoryError(f"cannot allocate {size} bytes for the neighbour list")
    return grown


def compute_forces(double[:, ::1] positions, double[:, ::1] forces, *,
                   double box_length, double cutoff, Workspace workspace=None):
    """Fill ``forces`` with F(positions) and return the potential energy."""
    _check_shapes(positions, positions, forces)
    if workspace is None:
        workspace = Workspace()
    workspace.refresh(positions, box_length, cutoff)
    cdef Box box = _box_of(box_length, cutoff)
    cdef double energy
    with nogil:
        energy = _forces(workspace, &positions[0, 0], &forces[0, 0], &box, True)
    return energy


def integrate_steps(double[:, ::1] positions, double[:, ::1] velocities,
                    double[:, ::1] forces, *, double box_length, double cutoff,
                    double dt, long num_steps, Workspace workspace=None):
    """Advance ``num_steps`` velocity-Verlet steps in place; return the final potential."""
    _check_shapes(positions, velocities, forces)
    if workspace is None:
        workspace = Workspace()
    cdef Box box = _box_of(box_length, cutoff)
    cdef double energy = NAN
    cdef double limit = 0.5 * workspace.skin - ROUNDING_MARGIN * (box_length + cutoff)
    cdef double* x = &positions[0, 0]
    cdef double* v = &velocities[0, 0]
    cdef double* f = &forces[0, 0]
    cdef Py_ssize_t count = positions.shape[0]
    cdef long step
    workspace.refresh(positions, box_length, cutoff)
    with nogil:
        for step in range(num_steps):
            if _kick_and_drift(x, v, f, workspace.built_positions, count, 0.5 * dt, dt,
                               box_length, limit, workspace.active_threads):
                with gil:
                    workspace.rebuild(positions, box_length, cutoff)
            if workspace.parts > 1:
                energy = _forces_on_threads(workspace, x, f, &box, step == num_steps - 1, v,
                                            0.5 * dt)
            else:
                energy = _forces(workspace, x, f, &box, step == num_steps - 1)
                _kick(v, f, count, 0.5 * dt)
    return energy


cdef Box _box_of(double box_length, double cutoff):
    """The constants the force loops use."""
    cdef Box box
    box.length = box_length
    box.quarter = 0.25 * box_length
    box.cutoff_sq = cutoff * cutoff
    box.energy_shift = lj_energy_shift(cutoff)
    return box


cdef void _check_shapes(double[:, ::1] positions, double[:, ::1] velocities,
                        double[:, ::1] forces) except *:
    """Refuse arrays the unchecked loops would overrun."""
    cdef Py_ssize_t count = positions.shape[0]
    if (velocities.shape[0] != count or forces.shape[0] != count
            or positions.shape[1] != 2 or velocities.shape[1] != 2 or forces.shape[1] != 2):
        raise ValueError(f"arrays must all have shape ({count}, 2)")
    if count == 0 or count >= 2**31:
        raise ValueError(f"the kernel takes 1 to 2**31 - 1 particles, got {count}")


cdef inline double _minimum_image(double delta, const Box* box) noexcept nogil:
    """The spec's ``delta - L * floor(delta / L + 0.5)`` (skipped where it is delta)."""
    if fabs(delta) <= box.quarter:
        return delta
    return delta - box.length * elastic_exact_floor(delta / box.length + 0.5)


cdef bint _kick_and_drift(double* x, double* v, const double* f, const double* built,
                          Py_ssize_t count, double half_dt, double dt, double box_length,
                          double limit, int threads) noexcept nogil:
    """``v += dt/2 F``, ``x += dt v``, wrap; whether a particle moved ``limit`` or more."""
    cdef Py_ssize_t k, axis
    cdef int moved = 0
    cdef double half_box = 0.5 * box_length
    cdef double limit_sq = limit * limit
    cdef double position, distance_sq, offset
    for k in prange(count, nogil=True, num_threads=threads, schedule="static"):
        distance_sq = 0.0
        for axis in range(2):
            v[2 * k + axis] += half_dt * f[2 * k + axis]
            position = x[2 * k + axis] + dt * v[2 * k + axis]
            position = position - box_length * elastic_exact_floor(position / box_length)
            x[2 * k + axis] = position
            offset = fabs(position - built[2 * k + axis])
            if offset > half_box:
                offset = box_length - offset
            distance_sq = distance_sq + offset * offset
        if distance_sq >= limit_sq:
            moved += 1
    return moved > 0


cdef bint _has_moved_too_far(const double* x, const double* built, Py_ssize_t count,
                             double box_length, double limit, int threads) noexcept nogil:
    """Whether any particle is ``limit`` or more from where it was (minimum image)."""
    cdef Py_ssize_t k
    cdef int moved = 0
    cdef double half_box = 0.5 * box_length
    cdef double dx, dy
    for k in prange(count, nogil=True, num_threads=threads, schedule="static"):
        dx = fabs(x[2 * k] - built[2 * k])
        dy = fabs(x[2 * k + 1] - built[2 * k + 1])
        if dx > half_box:
            dx = box_length - dx
        if dy > half_box:
            dy = box_length - dy
        if dx * dx + dy * dy >= limit * limit:
            moved += 1
    return moved > 0


cdef void _kick(double* v, const double* f, Py_ssize_t count, double half_dt) noexcept nogil:
    """``v += 0.5 * dt * F``."""
    cdef Py_ssize_t k
    for k in range(2 * count):
        v[k] += half_dt * f[k]


cdef double _forces(Workspace workspace, const double* x, double* f, const Box* box,
                    bint with_energy) noexcept nogil:
    """Forces from the listed pairs; the potential energy, or nan if not asked."""
    if workspace.parts > 1:
        return _forces_on_threads(workspace, x, f, box, with_energy, NULL, 0.0)
    cdef Py_ssize_t count = workspace.count
    cdef const int64_t* starts = workspace.starts
    cdef const int32_t* neighbours = workspace.neighbours
    cdef Py_ssize_t i, j, slot
    cdef double xi, yi, fxi, fyi, dx, dy, r2, inv_r2, inv_r6, strength, pair_fx, pair_fy
    cdef double energy = 0.0
    cdef double virial = 0.0
    cdef long long evaluated = 0
    for i in range(2 * count):
        f[i] = 0.0
    for i in range(count):
        xi = x[2 * i]
        yi = x[2 * i + 1]
        fxi = f[2 * i]
        fyi = f[2 * i + 1]
        for slot in range(starts[i], starts[i + 1]):
            j = neighbours[slot]
            dx = _minimum_image(xi - x[2 * j], box)
            dy = _minimum_image(yi - x[2 * j + 1], box)
            r2 = dx * dx + dy * dy
            if r2 < box.cutoff_sq:
                inv_r2 = 1.0 / r2
                inv_r6 = inv_r2 * inv_r2 * inv_r2
                strength = 24.0 * (2.0 * inv_r6 * inv_r6 - inv_r6)
                pair_fx = strength * inv_r2 * dx
                pair_fy = strength * inv_r2 * dy
                fxi += pair_fx
                fyi += pair_fy
                f[2 * j] -= pair_fx
                f[2 * j + 1] -= pair_fy
                if with_energy:
                    energy += 4.0 * (inv_r6 * inv_r6 - inv_r6) - box.energy_shift
                    virial += strength
                evaluated += 1
        f[2 * i] = fxi
        f[2 * i + 1] = fyi
    workspace.pair_evaluations += evaluated
    if not with_energy:
        return NAN
    workspace.virial = virial
    return energy


cdef double _forces_on_threads(Workspace workspace, const double* x, double* f,
                               const Box* box, bint with_energy, double* kick_velocities,
                               double half_dt) noexcept nogil:
    """``_forces`` on one thread per range of particles, with the same bits.

    First every thread computes the crossing pairs of its range; then each sweeps its
    range as the serial loop does, its particles starting from the crossing forces
    they receive (those come first in the serial order: their i is smaller), and using
    the stored force of each crossing pair where its i meets it. With
    ``kick_velocities``, each velocity gets ``+= half_dt * F`` as soon as F is final.
    """
    cdef int parts = workspace.parts
    cdef int part
    cdef long long evaluated = 0
    cdef Py_ssize_t slot
    cdef double energy = 0.0
    cdef double virial = 0.0
    for part in prange(parts, nogil=True, num_threads=parts, schedule="static", chunksize=1):
        evaluated += _crossing_forces(workspace, x, box, part, with_energy)
    for part in prange(parts, nogil=True, num_threads=parts, schedule="static", chunksize=1):
        evaluated += _sweep_range(workspace, x, f, box, part, with_energy, kick_velocities,
                                  half_dt)
    workspace.pair_evaluations += evaluated
    if not with_energy:
        return NAN
    for slot in range(workspace.starts[workspace.count]):
        energy += workspace.pair_energies[slot]
        virial += workspace.pair_virials[slot]
    workspace.virial = virial
    return energy


cdef inline Py_ssize_t _range_start(Workspace workspace, int part) noexcept nogil:
    """The first particle of range ``part``."""
    return workspace.count * part // workspace.parts


cdef long long _crossing_forces(Workspace workspace, const double* x, const Box* box,
                                int part, bint with_energy) noexcept nogil:
    """Store the force (energy, virial) of every crossing pair of range ``part``; how many
    were inside the cutoff."""
    cdef Py_ssize_t i, slot
    cdef long long evaluated = 0
    for i in range(_range_start(workspace, part), _range_start(workspace, part + 1)):
        for slot in range(workspace.crossing_first[i], workspace.starts[i + 1]):
            evaluated += _store_pair(workspace, x, box, i, slot, with_energy)
    return evaluated


cdef inline bint _store_pair(Workspace workspace, const double* x, const Box* box,
                             Py_ssize_t i, Py_ssize_t slot, bint with_energy) noexcept nogil:
    """Compute and store one listed pair's force (0.0 beyond the cutoff); whether inside."""
    cdef Py_ssize_t j = workspace.neighbours[slot]
    cdef double dx = _minimum_image(x[2 * i] - x[2 * j], box)
    cdef double dy = _minimum_image(x[2 * i + 1] - x[2 * j + 1], box)
    cdef double r2 = dx * dx + dy * dy
    cdef double inv_r2, inv_r6, strength
    if not r2 < box.cutoff_sq:
        workspace.pair_forces[2 * slot] = 0.0
        workspace.pair_forces[2 * slot + 1] = 0.0
        workspace.pair_energies[slot] = 0.0
        workspace.pair_virials[slot] = 0.0
        return False
    inv_r2 = 1.0 / r2
    inv_r6 = inv_r2 * inv_r2 * inv_r2
    strength = 24.0 * (2.0 * inv_r6 * inv_r6 - inv_r6)
    workspace.pair_forces[2 * slot] = strength * inv_r2 * dx
    workspace.pair_forces[2 * slot + 1] = strength * inv_r2 * dy
    if with_energy:
        workspace.pair_energies[slot] = 4.0 * (inv_r6 * inv_r6 - inv_r6) - box.energy_shift
        workspace.pair_virials[slot] = strength
    return True


cdef long long _sweep_range(Workspace workspace, const double* x, double* f, const Box* box,
                            int part, bint with_energy, double* kick_velocities,
                            double half_dt) noexcept nogil:
    """The serial loop over range ``part``; how many of its own pairs were inside."""
    cdef Py_ssize_t first = _range_start(workspace, part)
    cdef Py_ssize_t end = _range_start(workspace, part + 1)
    cdef Py_ssize_t i, slot, into
    cdef double fxi, fyi
    cdef long long evaluated = 0
    for i in range(first, end):
        fxi = 0.0
        fyi = 0.0
        for into in range(workspace.crossing_starts[i], workspace.crossing_starts[i + 1]):
            slot = workspace.crossing_into[into]
            fxi = fxi - workspace.pair_forces[2 * slot]
            fyi = fyi - workspace.pair_forces[2 * slot + 1]
        f[2 * i] = fxi
        f[2 * i + 1] = fyi
    for i in range(first, end):
        fxi = f[2 * i]
        fyi = f[2 * i + 1]
        for slot in range(workspace.starts[i], workspace.crossing_first[i]):
            if _store_pair(workspace, x, box, i, slot, with_energy):
                evaluated += 1
                fxi = fxi + workspace.pair_forces[2 * slot]
                fyi = fyi + workspace.pair_forces[2 * slot + 1]
                f[2 * workspace.neighbours[slot]] -= workspace.pair_forces[2 * slot]
                f[2 * workspace.neighbours[slot] + 1] -= workspace.pair_forces[2 * slot + 1]
        for slot in range(workspace.crossing_first[i], workspace.starts[i + 1]):
            fxi = fxi + workspace.pair_forces[2 * slot]
            fyi = fyi + workspace.pair_forces[2 * slot + 1]
        f[2 * i] = fxi
        f[2 * i + 1] = fyi
        if kick_velocities != NULL:
            kick_velocities[2 * i] += half_dt * fxi
            kick_velocities[2 * i + 1] += half_dt * fyi
    return evaluated


cdef Py_ssize_t _build_list(Workspace workspace, const double* x, Py_ssize_t count,
                            double box_length, double radius_sq, int side,
                            int parts) noexcept nogil:
    """Fill starts/neighbours; the capacity the list needs (over capacity: nothing usable).

    ``parts`` ranges of i are built side by side, each into its share of the capacity,
    then moved together.
    """
    cdef int most_in_a_cell = 0
    if side >= 3:
        most_in_a_cell = _sort_into_cells(workspace, x, count, box_length, side)
    cdef Py_ssize_t region = workspace.capacity // parts
    cdef Py_ssize_t ends[MAX_PARTS]
    cdef Py_ssize_t longest = 0
    cdef int part
    for part in prange(parts, nogil=True, num_threads=parts, schedule="static", chunksize=1):
        ends[part] = _build_part(workspace, x, count * part // parts,
                                 count * (part + 1) // parts, part * region,
                                 (part + 1) * region, box_length, radius_sq, side,
                                 most_in_a_cell, count)
    for part in range(parts):
        longest = max(longest, ends[part] - part * region)
    if longest > region:
        return longest * parts
    return _join_parts(workspace, ends, parts, region, count)


cdef Py_ssize_t _build_part(Workspace workspace, const double* x, Py_ssize_t first_i,
                            Py_ssize_t end_i, Py_ssize_t found, Py_ssize_t room_end,
                            double box_length, double radius_sq, int side, int most_in_a_cell,
                            Py_ssize_t count) noexcept nogil:
    """The lists of i in [first_i, end_i) from slot ``found`` on; where they end."""
    cdef Py_ssize_t i
    for i in range(first_i, end_i):
        workspace.starts[i] = found
        if side >= 3:
            found = _list_from_cells(workspace, x, i, box_length, radius_sq, side, found,
                                     found + 9 * most_in_a_cell <= room_end)
        else:
            found = _list_from_all(workspace, x, i, count, box_length, radius_sq, found,
                                   room_end)
    return found


cdef Py_ssize_t _join_parts(Workspace workspace, const Py_ssize_t* ends, int parts,
                            Py_ssize_t region, Py_ssize_t count) noexcept nogil:
    """Move each part's pairs right after the previous part's; the number of pairs."""
    cdef Py_ssize_t joined = ends[0]
    cdef Py_ssize_t shift, i
    cdef int part
    for part in range(1, parts):
        shift = joined - part * region
        memmove(workspace.neighbours + joined, workspace.neighbours + part * region,
                (ends[part] - part * region) * sizeof(int32_t))
        for i in range(count * part // parts, count * (part + 1) // parts):
            workspace.starts[i] += shift
        joined = ends[part] + shift
    workspace.starts[count] = joined
    return joined


cdef int _sort_into_cells(Workspace workspace, const double* x, Py_ssize_t count,
                          double box_length, int side) noexcept nogil:
    """Counting sort of the particles by cell, ascending index within each cell; the
    largest number of particles in one cell."""
    cdef Py_ssize_t k
    cdef int column, row, cell
    cdef int most = 0
    cdef double scale = side / box_length
    for k in range(side * side):
        workspace.cell_sizes[k] = 0
    for k in range(count):
        column = <int> (x[2 * k] * scale)
        row = <int> (x[2 * k + 1] * scale)
        column = 0 if column < 0 else (side - 1 if column >= side else column)
        row = 0 if row < 0 else (side - 1 if row >= side else row)
        workspace.particle_column[k] = column
        workspace.particle_row[k] = row
        workspace.cell_sizes[column + side * row] += 1
    cdef int running = 0
    for k in range(side * side):
        workspace.cell_starts[k] = running
        running += workspace.cell_sizes[k]
        if workspace.cell_sizes[k] > most:
            most = workspace.cell_sizes[k]
        workspace.cell_sizes[k] = 0
    for k in range(count):
        cell = workspace.particle_column[k] + side * workspace.particle_row[k]
        workspace.by_cell[workspace.cell_starts[cell] + workspace.cell_sizes[cell]] = <int32_t> k
        workspace.cell_sizes[cell] += 1
    return most


cdef inline double _any_image_distance_sq(const double* x, Py_ssize_t i, Py_ssize_t j,
                                          double box_length) noexcept nogil:
    """Squared minimum-image distance (rounding does not matter: the skin has margin)."""
    cdef double dx = x[2 * i] - x[2 * j]
    cdef double dy = x[2 * i + 1] - x[2 * j + 1]
    if dx > 0.5 * box_length:
        dx -= box_length
    elif dx < -0.5 * box_length:
        dx += box_length
    if dy > 0.5 * box_length:
        dy -= box_length
    elif dy < -0.5 * box_length:
        dy += box_length
    return dx * dx + dy * dy


cdef inline int _wrapped_cell(int cell, int side, double coordinate, double box_length,
                              double* image) noexcept nogil:
    """A neighbouring cell index along one axis, wrapped; ``image`` gets the coordinate
    seen from that cell's particles (shifted by L across the boundary)."""
    if cell < 0:
        image[0] = coordinate + box_length
        return cell + side
    if cell >= side:
        image[0] = coordinate - box_length
        return cell - side
    image[0] = coordinate
    return cell


cdef Py_ssize_t _list_from_cells(Workspace workspace, const double* x, Py_ssize_t i,
                                 double box_length, double radius_sq, int side,
                                 Py_ssize_t found, bint can_write) noexcept nogil:
    """Append i's neighbours from the 9 cells around it, sorted; the new pair count.

    Appends without branching: every candidate is written, and kept by moving on only
    if it is a later particle within the radius (``can_write`` False: only counts).
    """
    cdef int32_t* neighbours = workspace.neighbours
    cdef const int32_t* by_cell = workspace.by_cell
    cdef int shift_column, shift_row, other_row, other, member, end
    cdef double image_x, image_y, dx, dy
    cdef Py_ssize_t j, first = found
    for shift_row in range(-1, 2):
        other_row = _wrapped_cell(workspace.particle_row[i] + shift_row, side, x[2 * i + 1],
                                  box_length, &image_y)
        for shift_column in range(-1, 2):
            other = side * other_row + _wrapped_cell(workspace.particle_column[i] + shift_column,
                                                     side, x[2 * i], box_length, &image_x)
            end = workspace.cell_starts[other] + workspace.cell_sizes[other]
            for member in range(workspace.cell_starts[other], end):
                j = by_cell[member]
                dx = image_x - x[2 * j]
                dy = image_y - x[2 * j + 1]
                if can_write:
                    neighbours[found] = <int32_t> j
                found += (j > i) & (dx * dx + dy * dy < radius_sq)
    if can_write:
        _insertion_sort(neighbours + first, found - first)
    return found


cdef Py_ssize_t _list_from_all(Workspace workspace, const double* x, Py_ssize_t i,
                               Py_ssize_t count, double box_length, double radius_sq,
                               Py_ssize_t found, Py_ssize_t room_end) noexcept nogil:
    """Append i's neighbours among every j > i (a box under three cells across)."""
    cdef Py_ssize_t j
    for j in range(i + 1, count):
        if _any_image_distance_sq(x, i, j, box_length) < radius_sq:
            if found < room_end:
                workspace.neighbours[found] = <int32_t> j
            found += 1
    return found


cdef void _insertion_sort(int32_t* values, Py_ssize_t length) noexcept nogil:
    """Sort a short run of indices ascending."""
    cdef Py_ssize_t k, back
    cdef int32_t value
    for k in range(1, length):
        value = values[k]
        back = k - 1
        while back >= 0 and values[back] > value:
            values[back + 1] = values[back]
            back -= 1
        values[back + 1] = value


cdef void _index_crossing_pairs(Workspace workspace, Py_ssize_t count) noexcept nogil:
    """Find each i's crossing pairs (a tail of its sorted list) and index them by j."""
    cdef int64_t* starts = workspace.starts
    cdef int32_t* neighbours = workspace.neighbours
    cdef int64_t* crossing_starts = workspace.crossing_starts
    cdef Py_ssize_t i, k, slot, end
    cdef int part
    for part in range(workspace.parts):
        end = _range_start(workspace, part + 1)
        for i in range(_range_start(workspace, part), end):
            slot = starts[i + 1]
            while slot > starts[i] and neighbours[slot - 1] >= end:
                slot -= 1
            workspace.crossing_first[i] = slot
    for k in range(count + 2):
        crossing_starts[k] = 0
    for i in range(count):
        for slot in range(workspace.crossing_first[i], starts[i + 1]):
            crossing_starts[neighbours[slot] + 2] += 1
    for k in range(2, count + 2):
        crossing_starts[k] += crossing_starts[k - 1]
    for i in range(count):
        for slot in range(workspace.crossing_first[i], starts[i + 1]):
            workspace.crossing_into[crossing_starts[neighbours[slot] + 1]] = slot
            crossing_starts[neighbours[slot] + 1] += 1
