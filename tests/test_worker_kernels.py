"""Long simulations on real worker processes: heartbeats, cancels, checkpoints and resumes."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests
from conftest import ServerProcess, free_port, wait_until

from elastic.kernels import available_algorithms, run_simulation
from elastic.kernels.params import parse_simulation_params

Starter = Callable[..., ServerProcess]
WorkerStarter = Callable[..., subprocess.Popen[bytes]]


def submit_one(url: str, task_id: str, algorithm: str, particles: int, steps: int,
               **extra: int) -> str:
    task = {"task_id": task_id, "algorithm": algorithm, "priority": "high",
            "parameters": {"num_particles": particles, "num_steps": steps, "seed": 11, **extra}}
    answer = requests.post(f"{url}/api/tasks/submit", json={"tasks": [task]}, timeout=10)
    assert answer.status_code == 200, answer.text
    return task_id


def status(url: str, task_id: str, *, wait: float = 0) -> dict[str, object]:
    return requests.get(f"{url}/api/tasks/status/{task_id}", params={"wait": wait},
                        timeout=wait + 10).json()


def fastest_algorithm() -> str:
    return "cython" if "cython" in available_algorithms() else "numpy"


def finished(url: str, task_id: str) -> Any:
    """The task's status once it has ended."""
    return wait_until(lambda: (s := status(url, task_id, wait=5))["finished_at"] and s,
                      timeout=240, message=f"{task_id} to end")


def steps_lasting(seconds: float, url: str, algorithm: str, particles: int) -> int:
    """How many steps take about ``seconds`` on the server's worker right now: probe runs
    on that worker, doubled until one lasts a second (set-up costs then do not count)."""
    steps, elapsed = 1000, 0.0
    for probe in range(12):
        if elapsed >= 1.0:
            break
        steps *= 2
        task_id = submit_one(url, f"probe-{probe}", algorithm, particles, steps)
        elapsed = float(finished(url, task_id)["execution_time"])
    return int(steps * seconds / elapsed)


def test_a_kernel_running_for_several_lease_lengths_completes_once_never_requeued(
        start_server: Starter, start_worker: WorkerStarter) -> None:
    # Short leases (1.5 s, renewed every 0.25 s) and a run sized on the worker itself to
    # about 15 s, so it outlives three leases even if the machine gets three times faster.
    short_leases = {"ELASTIC_LEASE_SECONDS": "1.5", "ELASTIC_WORKER_TIMEOUT_SECONDS": "1.5",
                    "ELASTIC_HEARTBEAT_INTERVAL_SECONDS": "0.25"}
    server = start_server(env=short_leases)
    start_worker(server.url, worker_id="steady", env=short_leases)
    algorithm, particles = fastest_algorithm(), 1500
    steps = steps_lasting(15.0, server.url, algorithm, particles)
    ended = finished(server.url, submit_one(server.url, "marathon", algorithm, particles, steps))
    assert ended["status"] == "completed"
    [attempt] = ended["history"]
    assert attempt["outcome"] == "completed"
    ran_for = (datetime.fromisoformat(attempt["ended_at"])
               - datetime.fromisoformat(attempt["started_at"])).total_seconds()
    assert ran_for > 3 * 1.5, f"the run lasted {ran_for:.1f} s, too short to outlive three leases"


def test_cancel_stops_a_running_kernel_within_a_second(
        start_server: Starter, start_worker: WorkerStarter) -> None:
    server = start_server()
    port = free_port()
    start_worker(server.url, worker_id="cancellable", extra=["--port", str(port)])
    task_id = submit_one(server.url, "doomed", "python", 120, 200_000)
    wait_until(lambda: (status(server.url, task_id)["progress"] or 0) > 0,
               message="the kernel to report progress")
    running = requests.get(f"http://127.0.0.1:{port}/status", timeout=5).json()["running"]
    assert [task["task_id"] for task in running] == [task_id]
    cancelled_at = time.monotonic()
    answer = requests.post(f"{server.url}/api/tasks/{task_id}/cancel", timeout=5).json()
    assert answer["status"] == "cancelled"
    wait_until(lambda: not requests.get(f"http://127.0.0.1:{port}/status",
                                        timeout=5).json()["running"],
               timeout=10, interval=0.02, message="the worker to stop the kernel")
    stopped_after = time.monotonic() - cancelled_at
    assert stopped_after < 2.0, f"stopped after {stopped_after:.2f} s"
    assert status(server.url, task_id)["status"] == "cancelled"


def test_a_resumed_simulation_is_bit_identical_to_an_uninterrupted_run(
        start_server: Starter, start_worker: WorkerStarter) -> None:
    server = start_server()
    doomed = start_worker(server.url, worker_id="first")
    algorithm = fastest_algorithm()
    particles, steps, sample_every = 400, 75_000, 750
    task_id = submit_one(server.url, "resumable", algorithm, particles, steps,
                         sample_every=sample_every)
    wait_until(lambda: (status(server.url, task_id)["progress"] or 0) > 0.3, timeout=120,
               message="the run to pass 30 % with a checkpoint saved")
    doomed.send_signal(signal.SIGKILL)
    start_worker(server.url, worker_id="second")
    ended = wait_until(lambda: (s := status(server.url, task_id, wait=5))["finished_at"] and s,
                       timeout=180, message="the resumed run to end")
    assert ended["status"] == "completed"
    assert [a["worker_id"] for a in ended["history"]] == ["first", "second"]
    result = ended["result"]
    assert result["resumed_from_step"] > 0
    reference = run_simulation(parse_simulation_params(
        {"num_particles": particles, "num_steps": steps, "seed": 11,
         "sample_every": sample_every}), algorithm=algorithm)
    for key in ("kinetic_energy", "potential_energy", "total_energy", "initial_total_energy",
                "momentum", "pair_evaluations", "series"):
        assert result[key] == reference[key], key


def test_a_run_over_the_workers_memory_limit_is_held_at_once_with_a_clear_error(
        start_server: Starter, start_worker: WorkerStarter) -> None:
    server = start_server()
    start_worker(server.url, worker_id="small-pi", env={"ELASTIC_MEMORY_LIMIT_MB": "50"})
    task_id = submit_one(server.url, "huge", "cython", 200_000, 1)
    ended = wait_until(lambda: (s := status(server.url, task_id, wait=5))["finished_at"] and s,
                       timeout=60, message="the task to be refused")
    assert (ended["status"], ended["held_reason"]) == ("held", "invalid_input")
    assert "parameters.num_particles" in ended["error"]
    assert "over the limit of 50 MB" in ended["error"]
    assert len(ended["history"]) == 1, "a refusal is not retried"
