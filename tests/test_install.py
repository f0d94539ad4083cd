"""What a new machine gets: the install's shape, the README's commands in CI, missing SDKs.

The base install must fit a 32-bit Raspberry Pi (no psycopg-binary wheel there, no LLM
SDK needed by a simulation worker), so the database driver and each SDK are extras,
and a worker whose SDK is missing says which extra to install.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import hiding_modules

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
README = (ROOT / "README.md").read_text(encoding="utf-8")
OPTIONAL_PACKAGES = ("psycopg", "ollama", "groq", "google-genai")


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()
            for requirement in requirements}


def _fenced_block_after(marker: str) -> str:
    after = README[README.index(marker):]
    return after.split("```bash\n", 1)[1].split("```", 1)[0].strip()


def test_the_base_install_has_no_database_driver_and_no_llm_sdk() -> None:
    base = _names(PYPROJECT["project"]["dependencies"])
    assert not base & set(OPTIONAL_PACKAGES)


@pytest.mark.parametrize(("extra", "package"), [
    ("postgres", "psycopg"), ("ollama", "ollama"), ("groq", "groq"), ("gemini", "google-genai")])
def test_each_optional_package_is_its_own_extra(extra: str, package: str) -> None:
    assert _names(PYPROJECT["project"]["optional-dependencies"][extra]) == {package}


def test_every_dependency_has_an_upper_bound() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"].values()
    requirements = PYPROJECT["project"]["dependencies"] + [r for extra in extras for r in extra]
    unbounded = [r for r in requirements
                 if not r.startswith("elastic-orchestrator[") and "<" not in r]
    assert not unbounded


def test_the_distribution_name_is_not_the_taken_pypi_name() -> None:
    assert PYPROJECT["project"]["name"] == "elastic-orchestrator"
    assert PYPROJECT["project"]["scripts"] == {"elastic": "elastic.cli:main"}


def test_ci_runs_the_readmes_test_command_with_the_constraints_in_its_own_venv() -> None:
    command = _fenced_block_after("Run the tests")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "-c constraints.txt" in command
    assert command in ci.splitlines()
    assert "python3 -m venv" in ci


def test_every_source_folder_is_a_package_so_the_wheel_carries_it() -> None:
    # setup.py lists packages with find_packages, which skips a folder without an
    # __init__.py: the editable install still imports it, the built wheel lacks it.
    folders = {path.parent for path in (ROOT / "elastic").rglob("*.py")}
    assert [str(folder.relative_to(ROOT)) for folder in sorted(folders)
            if not (folder / "__init__.py").is_file()] == []


def test_the_constraints_pin_every_package_exactly() -> None:
    lines = [line for line in (ROOT / "constraints.txt").read_text().splitlines()
             if line and not line.startswith((" ", "#"))]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[^ ]+", line) for line in lines), lines
    assert {"pytest", "schemathesis", "sqlalchemy", "numpy"} <= {
        line.split("==")[0].lower() for line in lines}


@pytest.mark.parametrize(("worker_type", "module", "extra", "key"), [
    ("groq", "groq", "groq", "GROQ_API_KEY"),
    ("deepseek", "ollama", "ollama", None),
    ("gemini", "google", "gemini", "GEMINI_API_KEY"),
])
def test_a_worker_whose_sdk_is_missing_stops_at_once_naming_the_extra(
        tmp_path: Path, worker_type: str, module: str, extra: str, key: str | None) -> None:
    env = hiding_modules(tmp_path / "site", module)
    if key:
        env[key] = "test-key-not-real"
    done = subprocess.run([sys.executable, "-m", "elastic", "worker", "--type", worker_type,
                           "--server", "http://127.0.0.1:9"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert f"pip install 'elastic-orchestrator[{extra}]'" in done.stderr
