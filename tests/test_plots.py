"""Pictures of a run: PNG files of the right size, from the library and from the CLI."""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from conftest import ServerProcess, wait_until
from test_cli import assert_one_clean_error_line, elastic

from elastic import kernels, plots
from elastic.errors import ElasticError
from elastic.kernels.params import parse_simulation_params

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OBSERVED = {"num_particles": 150, "num_steps": 40, "seed": 5, "sample_every": 4,
            "snapshot_every": 20, "rdf_bins": 30}


def require_matplotlib() -> None:
    """Skip where matplotlib is missing (the test extra installs it, so CI runs these)."""
    pytest.importorskip("matplotlib", reason="pip install 'elastic-orchestrator[plot]'")


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header, which must be a real PNG's."""
    header = path.read_bytes()[:24]
    assert header[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert header[12:16] == b"IHDR"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_a_real_run_is_drawn_as_pngs_of_the_documented_sizes(tmp_path: Path) -> None:
    require_matplotlib()
    result = kernels.run_simulation(parse_simulation_params(OBSERVED), algorithm="numpy")
    written = plots.write_plots(result, tmp_path / "pictures")
    assert [path.name for path in written] == ["energy.png", "temperature.png",
                                                "snapshot.png", "rdf.png"]
    sizes = {path.name: png_size(path) for path in written}
    assert sizes == {"energy.png": (1000, 600), "temperature.png": (1000, 600),
                     "snapshot.png": (800, 800), "rdf.png": (1000, 600)}


def test_a_result_without_observables_has_nothing_to_draw(tmp_path: Path) -> None:
    require_matplotlib()
    result = kernels.run_simulation(parse_simulation_params({"num_particles": 20,
                                                             "num_steps": 2}),
                                    algorithm="numpy")
    with pytest.raises(ElasticError, match="sample_every"):
        plots.write_plots(result, tmp_path)


def test_the_default_folder_is_a_safe_name_under_plots() -> None:
    assert plots.default_folder("sim/../x?1") == Path("plots") / "sim_.._x_1"
    assert plots.default_folder("..") == Path("plots") / "task"


def test_elastic_results_plot_draws_a_finished_task_from_the_server(
        project_folder: Path, start_server: Callable[..., ServerProcess],
        start_worker: Callable[..., subprocess.Popen[bytes]]) -> None:
    require_matplotlib()
    server = start_server()
    start_worker(server.url, worker_id="painter")
    task = {"task_id": "sim_plot", "algorithm": "numpy", "parameters": OBSERVED}
    answer = requests.post(f"{server.url}/api/tasks/submit", json={"tasks": [task]}, timeout=10)
    assert answer.status_code == 200, answer.text
    wait_until(lambda: requests.get(f"{server.url}/api/tasks/status/sim_plot",
                                    timeout=10).json()["status"] == "completed",
               timeout=60, message="the simulation to complete")
    result = elastic("results", "plot", "sim_plot", "--server", server.url, cwd=project_folder)
    assert result.returncode == 0, result.stderr
    folder = project_folder / "plots" / "sim_plot"
    assert result.stdout.split() == [str(Path("plots") / "sim_plot" / name) for name in
                                     ("energy.png", "temperature.png", "snapshot.png",
                                      "rdf.png")]
    assert png_size(folder / "snapshot.png") == (800, 800)


def test_elastic_results_plot_without_matplotlib_exits_2_with_the_install_line(
        project_folder: Path, start_server: Callable[..., ServerProcess],
        tmp_path: Path) -> None:
    server = start_server()
    requests.post(f"{server.url}/api/tasks/submit", timeout=10, json={"tasks": [
        {"task_id": "sim_waiting", "algorithm": "numpy", "parameters": OBSERVED}]})
    blocker = tmp_path / "no-matplotlib" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('matplotlib is blocked here')\n")
    result = elastic("results", "plot", "sim_waiting", "--server", server.url,
                     cwd=project_folder, env={"PYTHONPATH": str(blocker.parent)})
    assert result.returncode == 2
    assert_one_clean_error_line(result, "pip install 'elastic-orchestrator[plot]'")
