"""The reference kernel: plain Python loops, in exactly the order specs/particles.md fixes.

Every kernel has the same two functions. Both work in place on C-contiguous float64
arrays of shape (N, 2) and return the potential energy:

- ``compute_forces(positions, forces, *, box_length, cutoff)`` fills ``forces``.
- ``integrate_steps(positions, velocities, forces, *, box_length, cutoff, dt, num_steps)``
  advances ``num_steps`` velocity-Verlet steps; ``forces`` must hold F(positions) on
  entry and holds it again on return. It returns nan when ``num_steps`` is 0.

The arithmetic is written so that the other kernels can repeat it operation for
operation: ``cython_kernel`` and ``numpy_kernel`` give bit-identical results.
"""

from __future__ import annotations

import math

import numpy as np


def compute_forces(positions: np.ndarray, forces: np.ndarray, *,
                   box_length: float, cutoff: float) -> float:
    """Fill ``forces`` with F(positions) and return the potential energy."""
    fx, fy, energy = pair_forces(positions[:, 0].tolist(), positions[:, 1].tolist(),
                                 box_length=box_length, cutoff=cutoff)
    forces[:, 0] = fx
    forces[:, 1] = fy
    return energy


def integrate_steps(positions: np.ndarray, velocities: np.ndarray, forces: np.ndarray, *,
                    box_length: float, cutoff: float, dt: float, num_steps: int) -> float:
    """Advance ``num_steps`` velocity-Verlet steps in place; return the final potential."""
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
        fx, fy, energy = pair_forces(xs, ys, box_length=box_length, cutoff=cutoff)
        for k in range(len(xs)):
            vx[k] += half_dt * fx[k]
            vy[k] += half_dt * fy[k]
    positions[:, 0], positions[:, 1] = xs, ys
    velocities[:, 0], velocities[:, 1] = vx, vy
    forces[:, 0], forces[:, 1] = fx, fy
    return energy


def wrap_coordinate(value: float, box_length: float) -> float:
    """Put a coordinate back into [0, L): ``x - L * floor(x / L)``."""
    return value - box_length * math.floor(value / box_length)


def pair_forces(xs: list[float], ys: list[float], *,
                box_length: float, cutoff: float) -> tuple[list[float], list[float], float]:
    """Forces (x and y lists) and potential energy, visiting pairs i < j in order."""
    floor = math.floor
    count = len(xs)
    fx, fy = [0.0] * count, [0.0] * count
    cutoff_sq = cutoff * cutoff
    energy_shift = lj_energy_shift(cutoff)
    energy = 0.0
    for i in range(count):
        xi, yi = xs[i], ys[i]
        fxi, fyi = fx[i], fy[i]
        for j in range(i + 1, count):
            dx = xi - xs[j]
            dx -= box_length * floor(dx / box_length + 0.5)
            dy = yi - ys[j]
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
                fx[j] -= pair_fx
                fy[j] -= pair_fy
                energy += 4.0 * (inv_r6 * inv_r6 - inv_r6) - energy_shift
        fx[i], fy[i] = fxi, fyi
    return fx, fy, energy


def lj_energy_shift(cutoff: float) -> float:
    """``4 (rc^-12 - rc^-6)``, computed with the same operations as a pair energy."""
    inv_rc2 = 1.0 / (cutoff * cutoff)
    inv_rc6 = inv_rc2 * inv_rc2 * inv_rc2
    return 4.0 * (inv_rc6 * inv_rc6 - inv_rc6)
