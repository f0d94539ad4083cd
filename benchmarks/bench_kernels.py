"""How fast each particle kernel is, on one core, against the same loops written in C.

Usage:
    python setup.py build_ext --inplace        # the cython kernel
    python benchmarks/bench_kernels.py [--particles 1000] [--steps 100] [--python-steps 10]

Every kernel starts from the same state (specs/particles.md, default parameters).
The pure-Python kernel is slow, so it is timed over ``--python-steps`` steps and its
time per step is scaled to ``--steps`` (the work per step is the same). The C
yardstick (lj_reference.c) is built with the flags setup.py gives the extension.
Targets: cython at least 60x python, cython within 1.3x of C, numpy at least 10x
python. The exit status is 1 when a target is missed or cannot be measured.
"""

from __future__ import annotations

import argparse
import os
import runpy
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from elastic import kernels
from elastic.kernels import numpy_kernel, python_kernel
from elastic.kernels.params import SimulationParams, parse_simulation_params

ROOT = Path(__file__).resolve().parent.parent
C_SOURCE = Path(__file__).resolve().parent / "lj_reference.c"
MIN_CYTHON_SPEEDUP = 60.0
MAX_CYTHON_OVER_C = 1.3
MIN_NUMPY_SPEEDUP = 10.0


@dataclass
class State:
    """Positions, velocities and forces of one run (copied before each timing)."""

    positions: np.ndarray
    velocities: np.ndarray
    forces: np.ndarray

    def copy(self) -> State:
        """An independent copy."""
        return State(self.positions.copy(), self.velocities.copy(), self.forces.copy())


@dataclass
class Timing:
    """Best seconds per step of a kernel, and the state it ended in."""

    seconds_per_step: float
    final: State


def pin_to_one_core() -> str:
    """Run this process (and the C child) on a single CPU; say which."""
    if not hasattr(os, "sched_setaffinity"):
        return "one process (no CPU pinning on this system)"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


def initial_state(params: SimulationParams) -> State:
    """The spec's initial state, with F(x) from the reference kernel."""
    positions, velocities = kernels.build_initial_state(params)
    forces = np.zeros_like(positions)
    python_kernel.compute_forces(positions, forces, box_length=params.box_length,
                                 cutoff=params.cutoff)
    return State(positions, velocities, forces)


def time_kernel(kernel: ModuleType, start: State, params: SimulationParams, *,
                num_steps: int, repeats: int) -> Timing:
    """The best of ``repeats`` timings of ``num_steps`` steps from ``start``."""
    best = float("inf")
    for _ in range(repeats):
        state = start.copy()
        began = time.perf_counter()
        kernel.integrate_steps(state.positions, state.velocities, state.forces,
                               box_length=params.box_length, cutoff=params.cutoff,
                               dt=params.dt, num_steps=num_steps)
        best = min(best, time.perf_counter() - began)
    return Timing(best / num_steps, state)


def c_compile_flags() -> list[str]:
    """The extension's C flags, read from setup.py so the comparison is like for like."""
    setup_globals = runpy.run_path(str(ROOT / "setup.py"), run_name="bench_kernels")
    return setup_globals["kernel_compile_args"]()


def write_c_state(path: Path, start: State, params: SimulationParams, num_steps: int) -> None:
    """The state file lj_reference.c reads: every float in hex, so it reads back exactly."""
    lines = [f"{params.num_particles} {params.box_length.hex()} {params.cutoff.hex()} "
             f"{params.dt.hex()} {num_steps}"]
    for (x, y), (vx, vy) in zip(start.positions.tolist(), start.velocities.tolist(), strict=True):
        lines.append(f"{x.hex()} {y.hex()} {vx.hex()} {vy.hex()}")
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


def time_c_reference(start: State, params: SimulationParams, flags: list[str], *,
                     num_steps: int, repeats: int) -> tuple[float, np.ndarray]:
    """Build and run lj_reference.c: its best seconds per step and its final velocities."""
    with tempfile.TemporaryDirectory() as folder:
        program, state_file = Path(folder) / "lj_reference", Path(folder) / "state.txt"
        compiler = os.environ.get("CC", "cc")
        subprocess.run([compiler, *flags, "-o", str(program), str(C_SOURCE), "-lm"], check=True)
        write_c_state(state_file, start, params, num_steps)
        output = subprocess.run([str(program), str(state_file), str(repeats)], check=True,
                                capture_output=True, text=True).stdout.splitlines()
    seconds = float(output[0].split()[1])
    velocities = np.array([[float.fromhex(word) for word in line.split()] for line in output[2:]])
    return seconds / num_steps, velocities


def check_target(name: str, value: float, *, at_least: float | None = None,
                 at_most: float | None = None) -> bool:
    """Print one ratio against its target; return whether it is met."""
    is_met = (at_least is None or value >= at_least) and (at_most is None or value <= at_most)
    target = f">= {at_least:g}" if at_least is not None else f"<= {at_most:g}"
    print(f"  {name:<18} {value:8.2f}x   target {target:<7} {'ok' if is_met else 'MISSED'}")
    return is_met


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--python-steps", type=int, default=10,
                        help="steps to time the pure-Python kernel over (scaled per step)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timings of the fast kernels; the best one counts")
    return parser.parse_args(argv)


def report_kernel(name: str, seconds_per_step: float, num_steps: int, note: str = "") -> None:
    """One line of the timing table."""
    print(f"  {name:<8} {seconds_per_step * 1e3:10.3f} ms/step "
          f"{seconds_per_step * num_steps:10.3f} s for {num_steps} steps  {note}")


def main(argv: list[str] | None = None) -> int:
    """Time the kernels, print the figures and ratios; 1 if a target is missed."""
    args = parse_arguments(argv)
    if "cython" not in kernels.ALGORITHMS:
        print(f"cython kernel not built ({kernels.CYTHON_IMPORT_ERROR}): {kernels.BUILD_HINT}")
        return 1
    cython_kernel = kernels.ALGORITHMS["cython"]
    where = pin_to_one_core()
    params = parse_simulation_params({"num_particles": args.particles, "num_steps": args.steps})
    start = initial_state(params)
    flags = c_compile_flags()
    print(f"N={args.particles}, {args.steps} steps, default parameters, {where}")
    python = time_kernel(python_kernel, start, params, num_steps=args.python_steps, repeats=1)
    numpy = time_kernel(numpy_kernel, start, params, num_steps=args.steps, repeats=args.repeats)
    cython = time_kernel(cython_kernel, start, params, num_steps=args.steps,
                         repeats=args.repeats)
    c_per_step, c_velocities = time_c_reference(start, params, flags, num_steps=args.steps,
                                                repeats=args.repeats)
    report_kernel("python", python.seconds_per_step, args.steps,
                  f"(timed over {args.python_steps} steps, scaled linearly)")
    report_kernel("numpy", numpy.seconds_per_step, args.steps)
    report_kernel("cython", cython.seconds_per_step, args.steps)
    report_kernel("C", c_per_step, args.steps, f"(cc {' '.join(flags)})")
    short_cython = time_kernel(cython_kernel, start, params, num_steps=args.python_steps,
                               repeats=1)
    print(f"  same bits: python = cython over {args.python_steps} steps: "
          f"{np.array_equal(python.final.velocities, short_cython.final.velocities)}; "
          f"C = cython over {args.steps} steps: "
          f"{np.array_equal(c_velocities, cython.final.velocities)}")
    results = [
        check_target("cython vs python", python.seconds_per_step / cython.seconds_per_step,
                     at_least=MIN_CYTHON_SPEEDUP),
        check_target("cython time / C", cython.seconds_per_step / c_per_step,
                     at_most=MAX_CYTHON_OVER_C),
        check_target("numpy vs python", python.seconds_per_step / numpy.seconds_per_step,
                     at_least=MIN_NUMPY_SPEEDUP),
    ]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
