# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""The compiled kernel: python_kernel's loops in C, bit for bit.

Same functions and signatures as ``python_kernel``, same operation order, no fast
math; setup.py compiles it with ``-ffp-contract=off`` so that no multiply-add is
fused (Python never fuses). C's floor(-0.0) is -0.0 where Python's is 0, but no
coordinate or minimum-image argument is ever -0.0. The loops run without the GIL,
so other threads (the worker's heartbeat) keep running while it computes.
"""

from libc.math cimport NAN, floor


def compute_forces(double[:, ::1] positions, double[:, ::1] forces, *,
                   double box_length, double cutoff):
    """Fill ``forces`` with F(positions) and return the potential energy."""
    _check_shapes(positions, positions, forces)
    cdef double energy
    with nogil:
        energy = _pair_forces(positions, forces, box_length, cutoff)
    return energy


def integrate_steps(double[:, ::1] positions, double[:, ::1] velocities,
                    double[:, ::1] forces, *, double box_length, double cutoff,
                    double dt, long num_steps):
    """Advance ``num_steps`` velocity-Verlet steps in place; return the final potential."""
    _check_shapes(positions, velocities, forces)
    cdef double energy = NAN
    cdef long step
    with nogil:
        for step in range(num_steps):
            _kick(velocities, forces, 0.5 * dt)
            _drift(positions, velocities, dt, box_length)
            energy = _pair_forces(positions, forces, box_length, cutoff)
            _kick(velocities, forces, 0.5 * dt)
    return energy


cdef void _check_shapes(double[:, ::1] positions, double[:, ::1] velocities,
                        double[:, ::1] forces) except *:
    """Refuse arrays the unchecked loops would overrun."""
    cdef Py_ssize_t count = positions.shape[0]
    if (velocities.shape[0] != count or forces.shape[0] != count
            or positions.shape[1] != 2 or velocities.shape[1] != 2 or forces.shape[1] != 2):
        raise ValueError(f"arrays must all have shape ({count}, 2)")


cdef void _kick(double[:, ::1] velocities, double[:, ::1] forces,
                double half_dt) noexcept nogil:
    """``v += 0.5 * dt * F``."""
    cdef Py_ssize_t k
    for k in range(velocities.shape[0]):
        velocities[k, 0] += half_dt * forces[k, 0]
        velocities[k, 1] += half_dt * forces[k, 1]


cdef void _drift(double[:, ::1] positions, double[:, ::1] velocities, double dt,
                 double box_length) noexcept nogil:
    """``x += dt * v``, then wrap into [0, L)."""
    cdef Py_ssize_t k
    cdef double x, y
    for k in range(positions.shape[0]):
        x = positions[k, 0] + dt * velocities[k, 0]
        y = positions[k, 1] + dt * velocities[k, 1]
        positions[k, 0] = x - box_length * floor(x / box_length)
        positions[k, 1] = y - box_length * floor(y / box_length)


cdef double _pair_forces(double[:, ::1] positions, double[:, ::1] forces,
                         double box_length, double cutoff) noexcept nogil:
    """Forces and potential energy, visiting pairs i < j in order."""
    cdef Py_ssize_t count = positions.shape[0]
    cdef Py_ssize_t i, j
    cdef double xi, yi, fxi, fyi, dx, dy, r2, inv_r2, inv_r6, magnitude, pair_fx, pair_fy
    cdef double cutoff_sq = cutoff * cutoff
    cdef double inv_rc2 = 1.0 / (cutoff * cutoff)
    cdef double inv_rc6 = inv_rc2 * inv_rc2 * inv_rc2
    cdef double energy_shift = 4.0 * (inv_rc6 * inv_rc6 - inv_rc6)
    cdef double energy = 0.0
    for i in range(count):
        forces[i, 0] = 0.0
        forces[i, 1] = 0.0
    for i in range(count):
        xi = positions[i, 0]
        yi = positions[i, 1]
        fxi = forces[i, 0]
        fyi = forces[i, 1]
        for j in range(i + 1, count):
            dx = xi - positions[j, 0]
            dx -= box_length * floor(dx / box_length + 0.5)
            dy = yi - positions[j, 1]
            dy -= box_length * floor(dy / box_length + 0.5)
            r2 = dx * dx + dy * dy
            if r2 < cutoff_sq:
                inv_r2 = 1.0 / r2
                inv_r6 = inv_r2 * inv_r2 * inv_r2
                magnitude = 24.0 * (2.0 * inv_r6 * inv_r6 - inv_r6) * inv_r2
                pair_fx = magnitude * dx
                pair_fy = magnitude * dy
                fxi += pair_fx
                fyi += pair_fy
                forces[j, 0] -= pair_fx
                forces[j, 1] -= pair_fy
                energy += 4.0 * (inv_r6 * inv_r6 - inv_r6) - energy_shift
        forces[i, 0] = fxi
        forces[i, 1] = fyi
    return energy
