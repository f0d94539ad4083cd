"""Builds the optional compiled kernel; all other metadata lives in pyproject.toml.

The extension is optional: without Cython or without a C compiler the build still
succeeds, and the installed package simply does not offer the ``cython`` algorithm.
"""

from __future__ import annotations

import platform

from setuptools import Extension, setup


def cpu_has(flag: str) -> bool:
    """Whether this (Linux) machine's CPU lists ``flag`` in /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return any(line.startswith("flags") and flag in line.split() for line in cpuinfo)
    except OSError:
        return False


def kernel_compile_args() -> list[str]:
    """The C flags of the kernel (benchmarks/bench_kernels.py builds its C yardstick with them).

    ``-ffp-contract=off``: no fused multiply-adds, so the loops round exactly like
    Python. ``-msse4.1`` where the building x86-64 machine has it: floor() becomes one
    instruction instead of a library call, which halves the kernel's time. The build
    is then for that machine, as a source install is.
    """
    args = ["-O3", "-ffp-contract=off"]
    if platform.machine().lower() in ("x86_64", "amd64") and cpu_has("sse4_1"):
        args.append("-msse4.1")
    return args


def compiled_extensions() -> list[Extension]:
    """The Cython extension, or nothing when Cython is not installed."""
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    kernel = Extension("elastic.kernels.cython_kernel", ["elastic/kernels/cython_kernel.pyx"],
                       extra_compile_args=kernel_compile_args())
    extensions = cythonize([kernel], compiler_directives={"language_level": "3"})
    for extension in extensions:
        extension.optional = True  # set after cythonize, which does not carry it over
    return extensions


if __name__ == "__main__":
    setup(ext_modules=compiled_extensions())
