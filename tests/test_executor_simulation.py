"""The simulation executor: validation at submit time, progress, checkpoints, cancellation."""

from __future__ import annotations

import time
from typing import Any

import pytest

from elastic import kernels
from elastic.errors import InvalidTask, TaskCancelled
from elastic.executors.base import ExecutionContext
from elastic.executors.simulation import Simulation, SimulationTask
from elastic.kernels import cost
from elastic.kernels.params import parse_simulation_params

DATA = {"algorithm": "numpy", "parameters": {"num_particles": 30, "num_steps": 40, "seed": 2}}


def recording_context(**given: Any) -> tuple[ExecutionContext, list[float], list[dict[str, Any]]]:
    """A context, and the lists its progress reports and checkpoints go to."""
    progress: list[float] = []
    checkpoints: list[dict[str, Any]] = []
    context = ExecutionContext(task_id="sim_001", on_progress=progress.append,
                               on_checkpoint=checkpoints.append, **given)
    return context, progress, checkpoints


def field_of_error(data: Any, executor: Simulation | None = None) -> str | None:
    """The field named by the InvalidTask that validating ``data`` raises."""
    with pytest.raises(InvalidTask) as caught:
        (executor or Simulation()).validate(data)
    return caught.value.field


def test_validate_returns_the_algorithm_and_parameters_with_defaults() -> None:
    task = Simulation().validate(DATA)
    assert isinstance(task, SimulationTask)
    assert task.algorithm == "numpy"
    assert task.parameters.num_steps == 40
    assert task.parameters.dt == 0.005


def test_validate_accepts_cython_even_where_it_is_not_built() -> None:
    assert Simulation().validate({**DATA, "algorithm": "cython"}).algorithm == "cython"


@pytest.mark.parametrize("algorithm", ["fortran", None, 3, ["python"]])
def test_an_unknown_algorithm_is_named(algorithm: object) -> None:
    assert field_of_error({**DATA, "algorithm": algorithm}) == "algorithm"


def test_missing_parameters_are_named() -> None:
    assert field_of_error({"algorithm": "python"}) == "parameters"


def test_a_bad_parameter_is_named_with_its_key() -> None:
    data = {"algorithm": "python", "parameters": {"num_particles": 30, "num_steps": -5}}
    assert field_of_error(data) == "parameters.num_steps"


def test_a_run_over_the_memory_limit_is_refused_naming_num_particles() -> None:
    executor = Simulation(memory_limit_mb=1.0)
    task = executor.validate({"algorithm": "python",
                              "parameters": {"num_particles": 20_000, "num_steps": 1}})
    with pytest.raises(InvalidTask) as caught:
        executor.run(task, recording_context()[0])
    assert caught.value.field == "parameters.num_particles"
    assert "20000 particles" in caught.value.message
    assert "limit of 1 MB" in caught.value.message


def test_run_reports_increasing_progress_ending_at_1_and_the_seed_result_shape() -> None:
    executor = Simulation(chunk_seconds=0.0)
    context, progress, _ = recording_context()
    result = executor.run(executor.validate(DATA), context)
    assert progress == sorted(set(progress)) and progress[-1] == 1.0
    assert len(progress) == 40
    assert result["success"] is True
    assert result["status"] == "completed"
    assert result["output"] == "Simulación completada exitosamente"
    assert result["algorithm"] == "numpy"
    metrics = result["metrics"]
    assert metrics["particles_processed"] == 30
    assert metrics["steps_completed"] == 40
    assert metrics["memory_peak"] == f"{result['memory_peak_mb']:.1f} MB"
    assert 0 < metrics["pair_evaluations"] == result["pair_evaluations"] <= 41 * 30 * 29 // 2
    for key in ("kinetic_energy", "potential_energy", "total_energy", "energy_drift",
                "momentum", "execution_time_s"):
        assert key in result


def test_a_run_of_zero_steps_still_ends_at_1() -> None:
    context, progress, _ = recording_context()
    executor = Simulation()
    executor.run(executor.validate({**DATA, "parameters": {"num_particles": 30,
                                                           "num_steps": 0}}), context)
    assert progress == [1.0]


def test_checkpoints_are_saved_and_a_later_attempt_resumes_from_one_exactly() -> None:
    executor = Simulation(chunk_seconds=0.0)
    task = executor.validate(DATA)
    first, _, checkpoints = recording_context(checkpoint_interval_seconds=0.0)
    whole = executor.run(task, first)
    assert [state["step"] for state in checkpoints] == list(range(1, 40))
    second, progress, _ = recording_context(resume_from=checkpoints[24])
    resumed = executor.run(task, second)
    assert progress[0] == 26 / 40
    for key in ("total_energy", "kinetic_energy", "potential_energy", "momentum"):
        assert resumed[key] == whole[key]


def test_a_checkpoint_of_other_parameters_is_ignored() -> None:
    executor = Simulation(chunk_seconds=0.0)
    first, _, checkpoints = recording_context(checkpoint_interval_seconds=0.0)
    executor.run(executor.validate(DATA), first)
    other = executor.validate({**DATA, "parameters": {**DATA["parameters"], "seed": 3}})
    second, progress, _ = recording_context(resume_from=checkpoints[10])
    executor.run(other, second)
    assert progress[0] == 1 / 40


def test_checkpoints_wait_for_the_interval() -> None:
    executor = Simulation(chunk_seconds=0.0)
    context, _, checkpoints = recording_context(checkpoint_interval_seconds=3600.0)
    executor.run(executor.validate(DATA), context)
    assert checkpoints == []


def test_cancelling_stops_the_run_at_its_next_chunk() -> None:
    executor = Simulation(chunk_seconds=0.0)
    context = ExecutionContext(task_id="sim_002")
    reported: list[float] = []

    def cancel_after_first_report(fraction: float) -> None:
        reported.append(fraction)
        context.cancelled.set()

    context.on_progress = cancel_after_first_report
    with pytest.raises(TaskCancelled):
        executor.run(executor.validate(DATA), context)
    assert reported == [1 / 40]


class CancelledOnThirdLook(ExecutionContext):
    """A context whose task is cancelled while the run looks for the third time."""

    looks = 0

    def check_cancelled(self) -> None:
        """Count the look; the third one finds the task cancelled."""
        self.looks += 1
        if self.looks == 3:
            self.cancelled.set()
        super().check_cancelled()


def test_the_python_kernel_hears_a_cancel_inside_a_step() -> None:
    # 10,000 particles: the first force pass alone looks for a cancel ten times, so a
    # cancel stops it before any step (a step at 200,000 particles takes seconds).
    progress: list[float] = []
    context = CancelledOnThirdLook(task_id="sim_big", on_progress=progress.append)
    executor = Simulation(chunk_seconds=0.0)
    task = executor.validate({"algorithm": "python",
                              "parameters": {"num_particles": 10_000, "num_steps": 5}})
    with pytest.raises(TaskCancelled):
        executor.run(task, context)
    assert context.looks == 3 and progress == []


def test_a_task_cancelled_before_it_starts_does_no_work() -> None:
    context, progress, _ = recording_context()
    context.cancelled.set()
    with pytest.raises(TaskCancelled):
        Simulation().run(Simulation().validate(DATA), context)
    assert progress == []


def test_a_run_over_the_time_limit_is_refused_naming_num_steps_before_any_work() -> None:
    executor = Simulation()
    task = executor.validate({"algorithm": "numpy", "parameters": {"num_particles": 100_000,
                                                                   "num_steps": 1_000_000}})
    context, progress, _ = recording_context(time_limit_seconds=60.0)
    with pytest.raises(InvalidTask) as caught:
        executor.run(task, context)
    assert caught.value.field == "parameters.num_steps"
    assert caught.value.retryable is False
    assert "over its time limit of 60 s" in caught.value.message
    assert progress == []


def test_a_run_within_the_time_limit_runs() -> None:
    executor = Simulation()
    context, progress, _ = recording_context(time_limit_seconds=60.0)
    assert executor.run(executor.validate(DATA), context)["steps_completed"] == 40
    assert progress[-1] == 1.0


@pytest.mark.parametrize("algorithm", ["python", "numpy", "cython"])
def test_the_time_estimate_is_within_a_factor_of_ten_of_the_run(
        algorithm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Calibration and run both timed in CPU time: other work on a busy machine stretches
    # wall-clock time unevenly (a run measured under a load of 15 took 22x its estimate).
    if algorithm not in kernels.ALGORITHMS:
        pytest.skip(f"{algorithm} not built here")
    monkeypatch.setattr(cost.time, "perf_counter", time.process_time)
    count, steps = {"python": (300, 20), "numpy": (3000, 60), "cython": (5000, 1000)}[algorithm]
    params = parse_simulation_params({"num_particles": count, "num_steps": steps,
                                      "sample_every": steps // 10})
    factor = cost.measure_speed_factor(kernels.ALGORITHMS[algorithm], algorithm)
    estimate = cost.estimate_seconds(params, algorithm, speed_factor=factor)
    began = time.process_time()
    kernels.run_simulation(params, algorithm=algorithm)
    measured = time.process_time() - began
    assert estimate / 10 < measured < estimate * 10


def test_more_than_one_thread_is_refused_for_python_and_numpy() -> None:
    data = {"algorithm": "numpy", "parameters": {**DATA["parameters"], "threads": 2}}
    assert field_of_error(data) == "parameters.threads"
    assert Simulation().validate({**data, "algorithm": "cython"}).parameters.threads == 2
