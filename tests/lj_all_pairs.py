"""The all-pairs kernel as it was before neighbour lists: the yardstick of test_neighbour_lists.

Plain Python, every pair i < j in the spec's order (specs/particles.md). It also
counts the pairs inside the cutoff, which is what ``pair_evaluations`` counts now.
"""

from __future__ import annotations

import math

import numpy as np


def all_pair_forces(xs: list[float], ys: list[float], *, box_length: float,
                    cutoff: float) -> tuple[list[float], list[float], float, int]:
    """Forces, potential energy and pairs inside the cutoff, visiting every pair i < j."""
    count = len(xs)
    fx, fy = [0.0] * count, [0.0] * count
    cutoff_sq = cutoff * cutoff
    inv_rc2 = 1.0 / (cutoff * cutoff)
    inv_rc6 = inv_rc2 * inv_rc2 * inv_rc2
    energy_shift = 4.0 * (inv_rc6 * inv_rc6 - inv_rc6)
    energy = 0.0
    inside = 0
    for i in range(count):
        xi, yi = xs[i], ys[i]
        fxi, fyi = fx[i], fy[i]
        for j in range(i + 1, count):
            dx = xi - xs[j]
            dx -= box_length * math.floor(dx / box_length + 0.5)
            dy = yi - ys[j]
            dy -= box_length * math.floor(dy / box_length + 0.5)
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
                inside += 1
        fx[i], fy[i] = fxi, fyi
    return fx, fy, energy, inside


def integrate_all_pairs(positions: np.ndarray, velocities: np.ndarray, *, box_length: float,
                        cutoff: float, dt: float, num_steps: int) -> tuple[float, int]:
    """Velocity Verlet in place from F(x); the final potential and pairs inside, all passes."""
    xs, ys = positions[:, 0].tolist(), positions[:, 1].tolist()
    vx, vy = velocities[:, 0].tolist(), velocities[:, 1].tolist()
    fx, fy, energy, inside = all_pair_forces(xs, ys, box_length=box_length, cutoff=cutoff)
    half_dt = 0.5 * dt
    for _ in range(num_steps):
        for k in range(len(xs)):
            vx[k] += half_dt * fx[k]
            vy[k] += half_dt * fy[k]
            x, y = xs[k] + dt * vx[k], ys[k] + dt * vy[k]
            xs[k] = x - box_length * math.floor(x / box_length)
            ys[k] = y - box_length * math.floor(y / box_length)
        fx, fy, energy, inside_now = all_pair_forces(xs, ys, box_length=box_length,
                                                     cutoff=cutoff)
        inside += inside_now
        for k in range(len(xs)):
            vx[k] += half_dt * fx[k]
            vy[k] += half_dt * fy[k]
    positions[:, 0], positions[:, 1] = xs, ys
    velocities[:, 0], velocities[:, 1] = vx, vy
    return energy, inside
