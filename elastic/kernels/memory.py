"""How much memory a simulation takes: estimated before it runs, measured while it runs.

The measure (``MemoryPeak``) is the peak resident memory of the process while the
run goes on, as the operating system counts it: read from ``/proc/self/statm`` by a
sampling thread every ``SAMPLE_SECONDS`` (elsewhere, the process's lifetime peak from
``getrusage``). It includes the interpreter, the libraries and whatever else the
process runs at the time, which is what a machine must have free to run the task.
``tracemalloc`` was measured and rejected: it slows the pure-Python kernel about 20x.

The estimate (``estimate_memory_mb``) counts only what the run itself allocates.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from types import TracebackType

SAMPLE_SECONDS = 0.01
_STATM = "/proc/self/statm"

_BYTES_PER_PARTICLE = {
    # positions, velocities and forces as float64 (48 bytes), a checkpoint's compressed
    # base64 arrays and the copies made to build them (about 100 bytes).
    "common": 48 + 100,
    # six lists of Python floats (a pointer and a float object each), the list-build
    # positions (two more lists) and one list object per particle.
    "python": 8 * (8 + 24) + 56,
    # the list-build positions and the integrator's scratch (N x 2 float64 each).
    "numpy": 2 * 16,
    # list-build positions, list and cell offsets.
    "cython": 16 + 8 + 8 + 8,
}
_BYTES_PER_LISTED_PAIR = {
    "python": 8 + 28,  # a list slot and an int object
    # indices (2 + 4 receivers) and thirteen float64 scratch values per pair
    "numpy": 6 * 8 + 13 * 8 + 1,
    "cython": 4 * 1.25,  # int32 index, 25 % room to grow
}
# cython with threads > 1 also keeps each pair's force, energy and virial, and its
# place in its second particle's list.
_BYTES_PER_LISTED_PAIR_THREADED = 16 + 8 + 8 + 8
# What any run adds at first (interpreter caches, the sampling thread), measured at
# 6.5 MB in a fresh process, and the numpy kernel's blocks of candidate pairs.
_FIXED_MB = 8.0
_SCRATCH_MB = {"numpy": 40.0}
_SKIN_LENGTH = 0.3


def estimate_memory_mb(num_particles: int, algorithm: str, *, density: float = 0.5,
                       cutoff: float = 2.5, threads: int = 1) -> float:
    """An upper estimate of how much a run of ``algorithm`` grows resident memory (MB).

    It counts the state arrays, one checkpoint, the kernel's neighbour list (pairs
    closer than cutoff + skin at ``density``, with 20 % room for denser spots) and its
    scratch. Checked against measured growth from 1,000 to 200,000 particles.
    """
    reach = cutoff + _SKIN_LENGTH
    pairs_per_particle = min(num_particles - 1, 1.2 * math.pi * reach * reach * density) / 2
    per_pair = _BYTES_PER_LISTED_PAIR.get(algorithm, 0)
    if algorithm == "cython" and threads > 1:
        per_pair += _BYTES_PER_LISTED_PAIR_THREADED
    per_particle = (_BYTES_PER_PARTICLE["common"] + _BYTES_PER_PARTICLE.get(algorithm, 0)
                    + pairs_per_particle * per_pair)
    return num_particles * per_particle / 2**20 + _FIXED_MB + _SCRATCH_MB.get(algorithm, 0.0)


def resident_memory_mb() -> float:
    """The process's resident memory now (MB); its lifetime peak where /proc is missing."""
    try:
        with open(_STATM, encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class MemoryPeak:
    """A context manager that samples resident memory until it exits.

    Example:
        with MemoryPeak() as memory:
            ...
        memory.peak_mb
    """

    def __init__(self, *, sample_seconds: float = SAMPLE_SECONDS) -> None:
        self.sample_seconds = sample_seconds
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample_until_stopped,
                                         name="memory-peak", daemon=True)

    def _sample_until_stopped(self) -> None:
        """Keep the highest reading until ``_stop`` is set."""
        while not self._stop.wait(self.sample_seconds):
            self.peak_mb = max(self.peak_mb, resident_memory_mb())

    def __enter__(self) -> MemoryPeak:
        self.peak_mb = resident_memory_mb()
        self._sampler.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._sampler.join()
        self.peak_mb = max(self.peak_mb, resident_memory_mb())
