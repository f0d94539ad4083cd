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

import os
import sys
import threading
from types import TracebackType

SAMPLE_SECONDS = 0.01
_STATM = "/proc/self/statm"

_BYTES_PER_PARTICLE = {
    # positions, velocities and forces as float64 (48 bytes), one checkpoint as lists
    # of Python floats (2 x 128 bytes) and room for its JSON text (100 bytes).
    "common": 48 + 256 + 100,
    # six lists of Python floats (a pointer and a float object each).
    "python": 6 * (8 + 24),
    # past BLOCK_ELEMENTS particles a block is one row: about ten float64 temporaries.
    "numpy": 10 * 8,
    "cython": 0,
}
# What any run adds at first (interpreter caches, the sampling thread), measured at
# 6.5 MB in a fresh process, and the numpy kernel's blocks and batches of pairs.
_FIXED_MB = 8.0
_SCRATCH_MB = {"numpy": 24.0}


def estimate_memory_mb(num_particles: int, algorithm: str) -> float:
    """An upper estimate of how much a run of ``algorithm`` grows resident memory (MB).

    It counts the state arrays, one checkpoint, the python kernel's lists and the
    numpy kernel's scratch (blocks of at most ``numpy_kernel.BLOCK_ELEMENTS`` pairs).
    Checked against measured growth from 100 to 60000 particles.
    """
    per_particle = _BYTES_PER_PARTICLE["common"] + _BYTES_PER_PARTICLE.get(algorithm, 0)
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
