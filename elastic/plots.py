"""Pictures of a simulation result: energies and temperature against step, particles, g(r).

``write_plots(result, out_dir)`` draws what a ``simulation`` result holds (its
``series``, last ``snapshots`` entry and ``rdf``: see elastic/kernels/observables.py)
as PNG files and returns their paths. It needs matplotlib, an optional extra
(``pip install 'elastic-orchestrator[plot]'``), and draws with the Agg backend through
``matplotlib.figure.Figure``, so it never opens a window and keeps no global state.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from elastic.errors import ElasticError

INSTALL_HINT = "pip install 'elastic-orchestrator[plot]'"
DOTS_PER_INCH = 100
SERIES_SIZE_INCHES = (10.0, 6.0)  # 1000 x 600 pixels
SNAPSHOT_SIZE_INCHES = (8.0, 8.0)  # 800 x 800 pixels
ENERGY_KEYS = ("kinetic_energy", "potential_energy", "total_energy")


def write_plots(result: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Draw the result's series, last snapshot and g(r) into ``out_dir``; the files written.

    Raises:
        ModuleNotFoundError: matplotlib is not installed (the message says how to get it).
        ElasticError: the result has nothing to draw.
    """
    figure_class = _figure_class()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    series = result.get("series")
    if series:
        written.append(_save(_draw_energies(figure_class(figsize=SERIES_SIZE_INCHES), series),
                             out_dir / "energy.png"))
        written.append(_save(_draw_temperature(figure_class(figsize=SERIES_SIZE_INCHES), series),
                             out_dir / "temperature.png"))
    snapshots = result.get("snapshots")
    if snapshots:
        figure = figure_class(figsize=SNAPSHOT_SIZE_INCHES)
        written.append(_save(_draw_snapshot(figure, snapshots[-1], result["box_length"]),
                             out_dir / "snapshot.png"))
    if result.get("rdf"):
        written.append(_save(_draw_rdf(figure_class(figsize=SERIES_SIZE_INCHES), result["rdf"]),
                             out_dir / "rdf.png"))
    if not written:
        raise ElasticError("the result has nothing to draw: submit the simulation with "
                           "parameters.sample_every, snapshot_every or rdf_bins")
    return written


def default_folder(task_id: str) -> Path:
    """``plots/<task id>``, with characters unsafe in a file name replaced by ``_``."""
    safe = "".join(character if character.isalnum() or character in "-_." else "_"
                   for character in task_id)
    return Path("plots") / (safe.strip(".") or "task")


def _figure_class() -> Any:
    """matplotlib's Figure (Agg), or an error that says how to install it."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ModuleNotFoundError(f"matplotlib is not installed: {INSTALL_HINT}") from error
    return Figure


def _save(figure: Any, path: Path) -> Path:
    """Write ``figure`` as a PNG of exactly its size in pixels."""
    figure.savefig(path, dpi=DOTS_PER_INCH, format="png")
    return path


def _draw_energies(figure: Any, series: Mapping[str, Sequence[float]]) -> Any:
    """Kinetic, potential and total energy against step."""
    axes = figure.subplots()
    for key in ENERGY_KEYS:
        axes.plot(series["step"], series[key], label=key.replace("_", " "))
    axes.set(xlabel="step", ylabel="energy (reduced units)", title="Energy")
    axes.legend()
    axes.grid(alpha=0.3)
    return figure


def _draw_temperature(figure: Any, series: Mapping[str, Sequence[float]]) -> Any:
    """Temperature (KE / N) and pressure against step."""
    temperature_axes, pressure_axes = figure.subplots(2, 1, sharex=True)
    temperature_axes.plot(series["step"], series["temperature"], color="tab:red")
    temperature_axes.set(ylabel="temperature", title="Temperature and pressure")
    pressure_axes.plot(series["step"], series["pressure"], color="tab:blue")
    pressure_axes.set(xlabel="step", ylabel="pressure")
    for axes in (temperature_axes, pressure_axes):
        axes.grid(alpha=0.3)
    return figure


def decode_snapshot(snapshot: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Positions (N x 2) and speeds (N) of a ``float32-le-base64`` snapshot."""
    if snapshot.get("encoding") != "float32-le-base64":
        raise ElasticError(f"unknown snapshot encoding {snapshot.get('encoding')!r}")
    positions = np.frombuffer(base64.b64decode(snapshot["positions"]), dtype="<f4")
    speeds = np.frombuffer(base64.b64decode(snapshot["speeds"]), dtype="<f4")
    return positions.reshape(-1, 2), speeds


def _draw_snapshot(figure: Any, snapshot: Mapping[str, Any], box_length: float) -> Any:
    """The particles of one snapshot in the box, coloured by speed."""
    positions, speeds = decode_snapshot(snapshot)
    axes = figure.subplots()
    dot_area = float(np.clip(40_000 / max(len(speeds), 1), 0.05, 30.0))
    dots = axes.scatter(positions[:, 0], positions[:, 1], c=speeds, s=dot_area,
                        cmap="viridis", linewidths=0)
    figure.colorbar(dots, ax=axes, label="speed |v|")
    axes.set(xlim=(0, box_length), ylim=(0, box_length), aspect="equal",
             title=f"Particles at step {snapshot['step']}")
    return figure


def _draw_rdf(figure: Any, rdf: Mapping[str, Sequence[float]]) -> Any:
    """The radial distribution function."""
    axes = figure.subplots()
    axes.plot(rdf["r"], rdf["g"])
    axes.axhline(1.0, color="grey", linewidth=0.8)
    axes.set(xlabel="r", ylabel="g(r)", title="Radial distribution function")
    axes.grid(alpha=0.3)
    return figure
