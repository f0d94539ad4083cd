"""Load balancing (``load_balancing``): priority, least_loaded and fastest.

The rules run against every database with a hand-driven clock; the end-to-end test
runs a real orchestrator with a fast and a throttled ``elastic worker`` process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from conftest import FAST_CONFIG, ServerProcess, wait_until

from elastic import config
from elastic.errors import ConfigError
from elastic.store import Store
from elastic.store.balancing import MAX_DEFER_SECONDS
from elastic.tasks import NewTask

T0 = 1_000_000.0


def sim(task_id: str, *, priority: int = 5) -> NewTask:
    return NewTask(task_id=task_id, type="simulation", priority=priority,
                   data={"algorithm": "python", "parameters": {"num_particles": 4, "num_steps": 1}})


def register(store: Store, worker_id: str, *, capacity: int = 1, now: float = T0) -> None:
    store.register_worker(worker_id, worker_type="simulation", capacity=capacity,
                          capabilities={"algorithms": ["python"]}, now=now)


def complete(store: Store, worker_id: str, task_id: str, *, seconds: float, start: float) -> None:
    """Lease ``task_id`` to ``worker_id`` at ``start`` and complete it ``seconds`` later."""
    [lease] = store.lease_tasks(worker_id, now=start)
    assert lease.task.task_id == task_id
    store.record_result(task_id, worker_id=worker_id, lease_token=lease.lease_token,
                        result={"success": True}, now=start + seconds)


def measured_pc_and_pi(store: Store) -> float:
    """A PC (1 s a simulation) and a Pi (10 s) with their speeds measured; returns the time."""
    store.load_balancing = "fastest"
    register(store, "pc")
    register(store, "pi")
    store.submit_tasks([sim("warm-pc"), sim("warm-pi")], now=T0)
    complete(store, "pc", "warm-pc", seconds=1.0, start=T0)
    complete(store, "pi", "warm-pi", seconds=10.0, start=T0 + 1)
    return T0 + 11


def test_fastest_gives_the_task_to_the_pc_when_the_pc_and_the_pi_both_wait(store: Store) -> None:
    now = measured_pc_and_pi(store)
    store.submit_tasks([sim("job")], now=now)
    assert store.lease_tasks("pi", now=now) == []
    assert [lease.task.task_id for lease in store.lease_tasks("pc", now=now)] == ["job"]


def test_fastest_lets_the_pi_work_when_the_backlog_outlasts_its_task(store: Store) -> None:
    now = measured_pc_and_pi(store)
    store.submit_tasks([sim(f"job-{n:02d}") for n in range(30)], now=now)
    assert [lease.task.task_id for lease in store.lease_tasks("pi", now=now)] == ["job-00"]


def test_fastest_never_hands_the_slower_worker_a_less_urgent_task(store: Store) -> None:
    now = measured_pc_and_pi(store)
    store.submit_tasks([sim("urgent", priority=9), sim("later", priority=1)], now=now)
    assert store.lease_tasks("pi", now=now) == []
    assert [lease.task.task_id for lease in store.lease_tasks("pc", now=now)] == ["urgent"]


def test_a_worker_without_a_measurement_takes_what_it_is_given(store: Store) -> None:
    now = measured_pc_and_pi(store)
    register(store, "new", now=now)
    store.submit_tasks([sim("job")], now=now)
    assert [lease.task.task_id for lease in store.lease_tasks("new", now=now)] == ["job"]


def test_a_task_waiting_past_the_defer_limit_goes_to_whoever_asks(store: Store) -> None:
    now = measured_pc_and_pi(store)
    store.submit_tasks([sim("job")], now=now)
    later = now + MAX_DEFER_SECONDS + 1
    store.heartbeat("pc", now=later)
    assert [lease.task.task_id for lease in store.lease_tasks("pi", now=later)] == ["job"]


def test_a_dead_faster_worker_is_not_waited_for(store: Store) -> None:
    now = measured_pc_and_pi(store)
    store.unregister_worker("pc", now=now)
    store.submit_tasks([sim("job")], now=now)
    assert [lease.task.task_id for lease in store.lease_tasks("pi", now=now)] == ["job"]


def test_least_loaded_leaves_the_task_to_the_worker_with_less_in_flight(store: Store) -> None:
    store.load_balancing = "least_loaded"
    register(store, "big", capacity=2)
    register(store, "small", capacity=1)
    store.submit_tasks([sim("first"), sim("second")], now=T0)
    assert [lease.task.task_id for lease in store.lease_tasks("big", now=T0)] == ["first"]
    assert store.lease_tasks("big", now=T0) == []  # 1/2 in flight, small has 0/1
    assert [lease.task.task_id for lease in store.lease_tasks("small", now=T0)] == ["second"]


def test_priority_balancing_gives_the_task_to_whoever_asks(store: Store) -> None:
    register(store, "pc")
    register(store, "pi")
    store.submit_tasks([sim("job")], now=T0)
    assert [lease.task.task_id for lease in store.lease_tasks("pi", now=T0)] == ["job"]


def test_pruning_a_worker_deletes_its_speeds(store: Store) -> None:
    now = measured_pc_and_pi(store)
    store.unregister_worker("pi", now=now)
    assert store.prune_workers(older_than_seconds=0.0, now=now + 1) == ["pi"]


# -- configuration --------------------------------------------------------------------------

def test_the_seeds_load_balancing_algorithm_is_read_and_round_robin_is_least_loaded() -> None:
    settings = config.load(None, environ={"LOAD_BALANCING_ALGORITHM": "round_robin"})
    assert settings.load_balancing == "least_loaded"
    assert config.load(None, environ={}).load_balancing == "priority"


def test_an_unknown_load_balancing_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="load_balancing"):
        config.load(None, {"load_balancing": "random"}, environ={})


# -- end to end -----------------------------------------------------------------------------

SIMULATIONS = 15
# About a second on a quiet core: long enough that the throttle, which starts once the
# server shows the slow worker busy, slows most of it.
ONE_SECOND = {"num_particles": 60, "num_steps": 2000, "seed": 1}


def active_tasks(server: ServerProcess, worker_id: str) -> int:
    workers = requests.get(f"{server.url}/api/workers/list", timeout=5).json()["workers"]
    return next((w["active_tasks"] for w in workers if w["worker_id"] == worker_id), 0)


def throttle_while_busy(pid: int, server: ServerProcess, worker_id: str, stop: threading.Event,
                        *, running_fraction: float, limit_seconds: float) -> None:
    """Make the worker process ``pid`` a slow machine: while it runs a task, let it run only
    ``running_fraction`` of the time (SIGSTOP / SIGCONT in 100 ms periods); idle, it polls
    at full speed like any other. Ends when ``stop`` is set or after ``limit_seconds``."""
    deadline = time.monotonic() + limit_seconds
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            if not active_tasks(server, worker_id):
                time.sleep(0.05)
                continue
            os.kill(pid, signal.SIGSTOP)
            time.sleep(0.1 * (1 - running_fraction))
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.1 * running_fraction)
    except ProcessLookupError:
        return
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def completed_by(server: ServerProcess) -> dict[str, int]:
    workers = requests.get(f"{server.url}/api/workers/list", timeout=5).json()["workers"]
    return {w["worker_id"]: w["tasks_completed"] for w in workers}


def run_one_at_a_time(server: ServerProcess, count: int) -> None:
    """Submit ``count`` simulations one after the other, each when the previous ended, so
    that both workers are waiting whenever one arrives."""
    for number in range(count):
        task = {"task_id": f"sim_{number:03d}", "algorithm": "python",
                "parameters": ONE_SECOND}
        requests.post(f"{server.url}/api/tasks/submit", json=task, timeout=10).raise_for_status()
        wait_until(lambda task_id=task["task_id"]: requests.get(
            f"{server.url}/api/tasks/status/{task_id}", params={"wait": 5}, timeout=15,
        ).json()["status"] == "completed", timeout=120, message=f"{task['task_id']} to complete")


def test_fastest_gives_at_least_80_percent_of_the_simulations_to_the_fast_worker(
        start_server: Callable[..., ServerProcess],
        start_worker: Callable[..., subprocess.Popen[bytes]], project_folder: Path) -> None:
    (project_folder / "elastic.toml").write_text(FAST_CONFIG + 'load_balancing = "fastest"\n')
    server = start_server()
    start_worker(server.url, worker_id="fast")
    slow = start_worker(server.url, worker_id="slow")
    wait_until(lambda: set(completed_by(server)) == {"fast", "slow"}, timeout=60,
               message="both workers to register")
    stop = threading.Event()
    throttler = threading.Thread(target=throttle_while_busy, args=(slow.pid, server, "slow", stop),
                                 kwargs={"running_fraction": 0.1, "limit_seconds": 600},
                                 daemon=True)
    throttler.start()
    try:
        run_one_at_a_time(server, SIMULATIONS)
    finally:
        stop.set()
        throttler.join(timeout=5)
    done = completed_by(server)
    assert done["fast"] >= 0.8 * SIMULATIONS, done
