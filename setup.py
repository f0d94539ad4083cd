"""Lists the packages and builds the optional compiled kernel; other metadata is in pyproject.toml.

The extension is optional: without Cython or without a working C compiler the install
still succeeds, says that the compiled kernel was skipped and how to get it, and the
installed package simply does not offer the ``cython`` algorithm.

The build is portable by default (no flags for the building machine's CPU); set
``ELASTIC_NATIVE_BUILD=1`` to add ``-march=native``. OpenMP is used where the compiler
accepts ``-fopenmp``; elsewhere the kernel runs its threaded loops on one thread (same
results).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

# The Alembic scripts live in the top-level migrations/ folder and install as elastic.migrations.
PACKAGE_FOLDERS = {"elastic.migrations": "migrations", "elastic.migrations.versions": "migrations/versions"}

OPENMP_FLAG = "-fopenmp"
SKIPPED_MESSAGE = """
*** elastic: the compiled `cython` kernel was SKIPPED ({reason}).
*** The `python` and `numpy` kernels work. To get the fast one, install a C compiler
*** (e.g. `apt install gcc python3-dev`) and reinstall: pip install --force-reinstall .
"""


def kernel_compile_args() -> list[str]:
    """The C flags of the kernel.

    ``-ffp-contract=off``: no fused multiply-adds, so the loops round exactly like
    Python; no fast-math flag either. ``-march=native`` only when
    ``ELASTIC_NATIVE_BUILD=1`` asks for a build tied to this machine's CPU.
    """
    args = ["-O3", "-ffp-contract=off"]
    if os.environ.get("ELASTIC_NATIVE_BUILD") == "1":
        args.append("-march=native")
    return args


class OptionalKernelBuild(build_ext):
    """build_ext that adds OpenMP where it compiles and never fails the install."""

    def run(self) -> None:
        """Build; any compiler or platform error skips the kernel with a message."""
        try:
            super().run()
        except Exception as error:  # the kernel is optional: never fail the install
            print(SKIPPED_MESSAGE.format(reason=f"{type(error).__name__}: {error}"),
                  file=sys.stderr)

    def build_extensions(self) -> None:
        """Add the OpenMP flag to every extension if the compiler takes it, then build."""
        if self._compiles_with_openmp():
            for extension in self.extensions:
                extension.extra_compile_args.append(OPENMP_FLAG)
                extension.extra_link_args.append(OPENMP_FLAG)
        super().build_extensions()

    def _compiles_with_openmp(self) -> bool:
        """Whether the compiler builds and links a small OpenMP program."""
        source = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "openmp_check.c"
            path.write_text(source, encoding="ascii")
            try:
                objects = self.compiler.compile([str(path)], output_dir=folder,
                                                extra_postargs=[OPENMP_FLAG])
                self.compiler.link_executable(objects, "openmp_check", output_dir=folder,
                                              extra_postargs=[OPENMP_FLAG])
            except Exception:  # any failure means: build without OpenMP
                print("elastic: the C compiler has no OpenMP; the kernel's threads run serially",
                      file=sys.stderr)
                return False
        return True


def compiled_extensions() -> list[Extension]:
    """The Cython extension, or nothing (with a message) when Cython is not installed."""
    try:
        from Cython.Build import cythonize
    except ImportError:
        print(SKIPPED_MESSAGE.format(reason="Cython is not installed"), file=sys.stderr)
        return []
    kernel = Extension("elastic.kernels.cython_kernel", ["elastic/kernels/cython_kernel.pyx"],
                       extra_compile_args=kernel_compile_args())
    return cythonize([kernel], compiler_directives={"language_level": "3"})


def packages() -> list[str]:
    """Every package under elastic/, plus the ones mapped from other folders."""
    return find_packages(include=["elastic", "elastic.*"]) + list(PACKAGE_FOLDERS)


if __name__ == "__main__":
    setup(packages=packages(), package_dir=PACKAGE_FOLDERS, ext_modules=compiled_extensions(),
          cmdclass={"build_ext": OptionalKernelBuild})
