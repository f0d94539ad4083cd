"""Type checkers see the client's API: mypy --strict passes on a small program using it.

The program (tests/typing/uses_client.py) asserts the types of results with
``assert_type``, so a result that turned into ``Any`` (or a wrong class) fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "tests" / "typing" / "uses_client.py"


def test_a_program_using_the_client_passes_mypy_strict(tmp_path):
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-incremental",
         "--cache-dir", os.devnull, str(PROGRAM)],
        cwd=tmp_path, env={**os.environ, "MYPYPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_package_ships_its_py_typed_marker():
    assert (ROOT / "elastic" / "py.typed").is_file()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in package_data["package-data"]["elastic"]
