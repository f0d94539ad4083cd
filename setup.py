"""Lists the packages and builds the optional compiled kernel; other metadata is in pyproject.toml.

The extension is optional: without Cython or without a C compiler the build still
succeeds, and the installed package simply does not offer the ``cython`` algorithm.
"""

from __future__ import annotations

import platform

from setuptools import Extension, find_packages, setup

# The Alembic scripts live in the top-level migrations/ folder and install as elastic.migrations.
PACKAGE_FOLDERS = {"elastic.migrations": "migrations", "elastic.migrations.versions": "migrations/versions"}


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


def packages() -> list[str]:
    """Every package under elastic/, plus the ones mapped from other folders."""
    return find_packages(include=["elastic", "elastic.*"]) + list(PACKAGE_FOLDERS)


if __name__ == "__main__":
    setup(packages=packages(), package_dir=PACKAGE_FOLDERS, ext_modules=compiled_extensions())
