"""Nothing stuck, nothing run twice: leases, long polls, worker identity, time limits and
full disks, under real faults, against an in-process orchestrator over real HTTP.

Faults here are real: a proxy that drops the answer to a poll the server committed, a
tmpfs filled to ENOSPC under the SQLite file, more waiting clients than server threads,
calls forged without a worker's secret. What needs real processes (kill -9 of workers
and servers, a poison task that kills its worker) is in test_reliability_processes.py.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import wait_until
from faults import DroppingProxy, fill_disk, small_disk

from elastic.errors import ServerUnreachable, StorageFull, Unauthorized
from elastic.executors import ExecutionContext
from elastic.server.waiters import LongPolls
from elastic.store.notify import Notifier
from elastic.tasks import NewTask, TaskStatus

MUTATION = {"genome": {"param1": 0.5}, "mutation_rate": 0.1, "seed": 3}
Starter = Callable[..., Any]


class SlowMutation:
    """An evolution_mutation that takes ``seconds`` (reporting progress, so it can be
    stopped) and records the time limit its context was given."""

    name = "evolution_mutation"

    def __init__(self, seconds: float = 0.0, *, result_size: int = 0) -> None:
        self.seconds = seconds
        self.result_size = result_size
        self.time_limits: list[float | None] = []

    def validate(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """Anything goes."""
        return data

    def run(self, params: Mapping[str, Any], context: ExecutionContext) -> dict[str, Any]:
        """Work for ``seconds``, then answer a genome (padded to ``result_size`` bytes)."""
        self.time_limits.append(context.time_limit_seconds)
        ends_at = time.monotonic() + self.seconds
        while time.monotonic() < ends_at:
            context.report_progress(0.5)
            context.cancelled.wait(0.01)
        return {"genome": {"param1": 0.5}, "padding": "x" * self.result_size}


def submit(orchestrator: Any, *task_ids: str, **options: Any) -> None:
    orchestrator.store.submit_tasks([NewTask(task_id=task_id, type="evolution_mutation",
                                             data=MUTATION, **options) for task_id in task_ids])


def outcomes(orchestrator: Any, task_id: str) -> list[str]:
    return [attempt.outcome for attempt in orchestrator.store.task_attempts(task_id)]


def run_in_thread(loop: Any) -> threading.Thread:
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    return thread


# -- leases the worker never heard of -------------------------------------------------------

def test_a_lease_whose_answer_was_dropped_goes_back_uncounted_and_runs_once(
        start_orchestrator: Starter, make_worker_loop: Starter) -> None:
    orchestrator = start_orchestrator()
    orchestrator.store.lease_delivery_grace_seconds = 0.3
    proxy = DroppingProxy(orchestrator.server.effective_port)
    submit(orchestrator, "m1")
    loop = make_worker_loop(proxy.url)
    loop.register()
    proxy.drop_next_answer("/tasks")
    with pytest.raises(ServerUnreachable):
        loop.run_once()
    assert orchestrator.store.get_task("m1").worker_id == "loop-worker"  # the server leased it

    wait_until(lambda: loop.send_heartbeat() == [] and orchestrator.store.get_task("m1").status
               is TaskStatus.PENDING, message="the heartbeat to give the unknown lease back")
    task = orchestrator.store.get_task("m1")
    assert (task.attempts, task.failures, task.worker_deaths) == (0, 0, 0)
    assert loop.run_once() is True
    assert outcomes(orchestrator, "m1") == ["undelivered", "completed"]
    proxy.close()


# -- a full disk ------------------------------------------------------------------------------

def test_a_full_disk_for_a_while_then_freed_runs_every_task_exactly_once(
        start_orchestrator: Starter, make_worker_loop: Starter, tmp_path: Path) -> None:
    """The wedge: results refused with 507 used to be dropped while heartbeats kept their
    leases alive, eating every worker slot. Now they are delivered once space is back."""
    with small_disk(tmp_path / "disk", size_mb=8) as disk:
        orchestrator = start_orchestrator(f"sqlite:///{disk}/elastic.db", lease_seconds=60.0,
                                          worker_timeout_seconds=30.0)
        submit(orchestrator, *(f"t{n}" for n in range(60)))
        loops = [make_worker_loop(orchestrator.url, worker_id=f"w{n}", capacity=2,
                                  executors={"evolution_mutation": SlowMutation(0.02)})
                 for n in range(2)]
        threads = [run_in_thread(loop) for loop in loops]
        wait_until(lambda: orchestrator.store.count_tasks()["completed"] >= 5,
                   message="a few tasks to complete")
        filler = fill_disk(disk)
        with pytest.raises(StorageFull):
            submit(orchestrator, "while-full")
        time.sleep(2.0)  # the fault's duration: the disk stays full for 2 s
        filler.unlink()
        wait_until(lambda: orchestrator.store.count_tasks()["completed"] == 60, timeout=60,
                   message="every task to complete once the space is back")
        assert all(outcomes(orchestrator, f"t{n}").count("completed") == 1 for n in range(60))
        assert sum(loop.counts["refused"] for loop in loops) == 0
        for loop in loops:
            loop.stop()
        for thread in threads:
            thread.join(15)
        orchestrator.stop()


# -- long polls never starve heartbeats ---------------------------------------------------------

def test_heartbeats_arrive_on_time_with_more_waiting_clients_than_server_threads(
        start_orchestrator: Starter, make_worker_loop: Starter) -> None:
    orchestrator = start_orchestrator(server_threads=8, max_long_polls=4)
    orchestrator.store.submit_tasks([NewTask(task_id="never", type="agent_action", data={
        "messages": [{"role": "user", "content": "no LLM worker here"}]})])
    stop = threading.Event()
    told_to_retry = []

    def wait_forever() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    answer = session.get(f"{orchestrator.url}/api/tasks/status/never",
                                         params={"wait": 30}, timeout=40).json()
                except requests.RequestException:
                    return
                if "retry_after" in answer:
                    told_to_retry.append(answer["retry_after"])
                    stop.wait(answer["retry_after"] * (1 + random.random() / 2))

    clients = [threading.Thread(target=wait_forever, daemon=True) for _ in range(24)]
    for client in clients:
        client.start()
    submit(orchestrator, "work")
    loop = make_worker_loop(orchestrator.url, executors={"evolution_mutation": SlowMutation(4.0)})
    worker = run_in_thread(loop)
    wait_until(lambda: orchestrator.store.get_task("work").status is TaskStatus.COMPLETED,
               timeout=30, message="the worker's task to complete")
    assert outcomes(orchestrator, "work") == ["completed"], "the worker was never thought dead"
    assert told_to_retry, "more long polls than the bound were answered at once"
    latencies = []
    for _ in range(5):
        started = time.monotonic()
        loop.send_heartbeat()
        latencies.append(time.monotonic() - started)
    assert max(latencies) < 1.0, latencies
    stop.set()
    loop.stop()
    worker.join(15)
    orchestrator.stop()


def test_a_long_poll_beyond_the_bound_is_answered_at_once_with_retry_after(
        start_orchestrator: Starter) -> None:
    orchestrator = start_orchestrator(server_threads=6, max_long_polls=2)
    submit(orchestrator, "waited-on")
    status_url = f"{orchestrator.url}/api/tasks/status/waited-on"

    def hold_a_place() -> None:  # until the task ends; a poll turned away asks again
        while requests.get(status_url, params={"wait": 20}, timeout=30).json()["status"] == "pending":
            time.sleep(0.05)

    holders = [threading.Thread(target=hold_a_place) for _ in range(2)]
    for holder in holders:
        holder.start()

    def turned_away() -> requests.Response | None:
        answer = requests.get(status_url, params={"wait": 0.2}, timeout=30)
        return answer if "retry_after" in answer.json() else None

    answer = wait_until(turned_away, message="both waiting places to be taken")
    assert (answer.json()["status"], answer.json()["retry_after"]) == ("pending", 1.0)
    assert answer.headers["Retry-After"] == "1"
    started = time.monotonic()
    requests.get(status_url, params={"wait": 20}, timeout=30)
    assert time.monotonic() - started < 5, "a poll beyond the bound does not wait"
    orchestrator.store.cancel_task("waited-on")
    for holder in holders:
        holder.join(10)
    assert not any(holder.is_alive() for holder in holders)


def test_the_waiting_places_are_given_back_after_each_wait() -> None:
    changes = Notifier(poll_seconds=0.01)
    polls = LongPolls(changes, limit=1, retry_after_seconds=0.5)
    first = polls.wait(lambda: 0, bool, 0.05)
    second = polls.wait(lambda: 0, bool, 0.05)
    ready = polls.wait(lambda: 7, bool, 10.0)
    assert (first.retry_after_seconds, second.retry_after_seconds) == (None, None)
    assert (ready.value, ready.retry_after_seconds) == (7, None)


# -- worker identity ---------------------------------------------------------------------------

def test_calls_about_a_worker_with_a_secret_are_refused_without_it(
        start_orchestrator: Starter, make_worker_loop: Starter) -> None:
    orchestrator = start_orchestrator()
    submit(orchestrator, "m1")
    loop = make_worker_loop(orchestrator.url, worker_id="owner")
    loop.register()
    lease = requests.get(f"{orchestrator.url}/api/workers/owner/tasks", timeout=10,
                         headers={"X-Worker-Secret": loop.transport.headers["X-Worker-Secret"]})
    token = lease.json()["task"]["lease_token"]
    owner = {"worker_id": "owner", "lease_token": token}
    forged = [("get", "/api/workers/owner/tasks", None),
              ("post", "/api/workers/owner/heartbeat", {"tasks": {}}),
              ("post", "/api/tasks/m1/result", {**owner, "result": {"success": True}}),
              ("post", "/api/tasks/m1/checkpoint", {**owner, "checkpoint": {"step": 1}}),
              ("post", "/api/tasks/m1/release", owner),
              ("post", "/api/workers/owner/unregister", None),
              ("post", "/api/providers/groq/reserve", {"estimated_tokens": 1, "worker_id": "owner"})]
    for secret in (None, "guessed"):
        headers = {} if secret is None else {"X-Worker-Secret": secret}
        for method, path, body in forged:
            answer = requests.request(method, orchestrator.url + path, json=body,
                                      headers=headers, timeout=10)
            assert answer.status_code == 401, (path, answer.text)
            assert "X-Worker-Secret" in answer.json()["error"]
    task = orchestrator.store.get_task("m1")
    assert (task.status, task.worker_id, task.checkpoint) == (TaskStatus.ASSIGNED, "owner", None)
    assert orchestrator.store.get_worker("owner").is_live
    assert loop.send_heartbeat() == []
    loop.execute_and_report(lease.json()["task"])
    assert orchestrator.store.get_task("m1").status is TaskStatus.COMPLETED


def test_a_live_workers_id_is_not_given_to_another_registration(
        start_orchestrator: Starter, make_worker_loop: Starter) -> None:
    orchestrator = start_orchestrator()
    make_worker_loop(orchestrator.url, worker_id="taken").register()
    for headers in ({}, {"X-Worker-Secret": "guessed"}):
        answer = requests.post(f"{orchestrator.url}/api/workers/register", headers=headers,
                               json={"worker_id": "taken", "worker_type": "evolution"}, timeout=10)
        assert answer.status_code == 409, answer.text
        assert "X-Worker-Secret" in answer.json()["error"]


def test_a_restarted_worker_takes_its_id_back_at_once_with_the_secret_it_kept(
        start_orchestrator: Starter, make_worker_loop: Starter, tmp_path: Path) -> None:
    orchestrator = start_orchestrator()
    submit(orchestrator, "m1")
    secret_path = tmp_path / "state" / "workers" / "pi-1.secret"
    first_life = make_worker_loop(orchestrator.url, worker_id="pi-1", secret_path=secret_path)
    first_life.register()
    assert secret_path.stat().st_mode & 0o777 == 0o600
    held = requests.get(f"{orchestrator.url}/api/workers/pi-1/tasks", timeout=10, headers={
        "X-Worker-Secret": secret_path.read_text().strip()}).json()["task"]
    assert held["task_id"] == "m1"  # then the process dies (kill -9): nothing tells the server

    second_life = make_worker_loop(orchestrator.url, worker_id="pi-1", secret_path=secret_path)
    second_life.register()  # no 409: it presented the secret of its previous life
    task = orchestrator.store.get_task("m1")
    assert (task.status, task.worker_deaths, task.failures) == (TaskStatus.PENDING, 1, 0)
    assert outcomes(orchestrator, "m1") == ["worker_dead"]
    with pytest.raises(Unauthorized, match="X-Worker-Secret"):
        first_life.send_heartbeat()  # the old secret no longer speaks for pi-1


def test_a_worker_registered_the_seeds_way_needs_no_secret(start_orchestrator: Starter) -> None:
    orchestrator = start_orchestrator()
    submit(orchestrator, "m1")
    url = orchestrator.url
    registered = requests.post(f"{url}/api/workers/register", timeout=10,
                               json={"worker_id": "seed-worker", "worker_type": "evolution"})
    assert "worker_secret" not in registered.json()
    task = requests.get(f"{url}/api/workers/seed-worker/tasks", timeout=10).json()["task"]
    assert requests.post(f"{url}/api/workers/seed-worker/heartbeat", timeout=10).json()["status"] == "ok"
    reported = requests.post(f"{url}/api/tasks/{task['task_id']}/result", timeout=10, json={
        "worker_id": "seed-worker", "result": {"success": True, "genome": {"param1": 0.6}}})
    assert reported.json() == {"status": "received"}


# -- time limits and results the server cannot take --------------------------------------------

def test_a_task_running_past_its_time_limit_is_stopped_and_reported_failed(
        start_orchestrator: Starter, make_worker_loop: Starter) -> None:
    orchestrator = start_orchestrator()
    submit(orchestrator, "slow", timeout_seconds=1.0)
    loop = make_worker_loop(orchestrator.url, executors={"evolution_mutation": SlowMutation(60)})
    worker = run_in_thread(loop)
    attempt = wait_until(lambda: next(iter(orchestrator.store.task_attempts("slow")), None)
                         if outcomes(orchestrator, "slow")[:1] == ["failed"] else None,
                         timeout=20, message="the first attempt to be stopped at its limit")
    assert "time limit of 1 s" in attempt.error
    assert attempt.ended_at - attempt.started_at < 5
    loop.stop()
    worker.join(15)


def test_the_executor_gets_the_smaller_of_the_tasks_and_the_workers_time_limit(
        start_orchestrator: Starter, make_worker_loop: Starter) -> None:
    orchestrator = start_orchestrator(task_timeout_seconds=600.0)
    executor = SlowMutation()
    loop = make_worker_loop(orchestrator.url, executors={"evolution_mutation": executor},
                            max_task_seconds=30.0)
    loop.register()
    for task_id, timeout_seconds in (("own", 5.0), ("long", 100.0), ("default", None)):
        submit(orchestrator, task_id, timeout_seconds=timeout_seconds)
        assert loop.run_once() is True
    assert executor.time_limits == [5.0, 30.0, 30.0]
    uncapped = make_worker_loop(orchestrator.url, worker_id="uncapped",
                                executors={"evolution_mutation": executor})
    uncapped.register()
    submit(orchestrator, "server-default")
    assert uncapped.run_once() is True
    assert executor.time_limits[-1] == 600.0


def test_a_result_over_the_body_limit_is_held_with_a_failure_naming_its_size(
        start_orchestrator: Starter, make_worker_loop: Starter) -> None:
    orchestrator = start_orchestrator(max_body_bytes=4096)
    submit(orchestrator, "big")
    loop = make_worker_loop(orchestrator.url,
                            executors={"evolution_mutation": SlowMutation(result_size=10_000)})
    loop.register()
    assert loop.run_once() is True
    task = orchestrator.store.get_task("big")
    assert (task.status, task.held_reason) == (TaskStatus.HELD, "result_too_large")
    assert "result of 10" in task.error and "bytes was refused as too large" in task.error
    assert loop.counts["failed"] == 1 and loop.counts["refused"] == 0


def test_every_test_the_readmes_guarantees_name_exists() -> None:
    import re

    tests = Path(__file__).parent
    readme = (tests.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Guarantees", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(test_\w+)`", section))
    defined = {name for path in tests.glob("test_*.py")
               for name in re.findall(r"^def (test_\w+)\(", path.read_text(), re.M)}
    assert len(named) >= 15
    assert named <= defined, named - defined


def test_a_simulation_that_would_outlast_its_time_limit_is_held_before_it_starts(
        start_orchestrator: Starter, make_worker_loop: Starter) -> None:
    orchestrator = start_orchestrator()
    orchestrator.store.submit_tasks([NewTask(
        task_id="forever", type="simulation", timeout_seconds=60.0,
        data={"algorithm": "numpy",
              "parameters": {"num_particles": 200_000, "num_steps": 10**8, "seed": 1}})])
    loop = make_worker_loop(orchestrator.url, worker_type="simulation")
    loop.register()
    started = time.monotonic()
    assert loop.run_once() is True
    assert time.monotonic() - started < 30
    task = orchestrator.store.get_task("forever")
    assert (task.status, task.held_reason) == (TaskStatus.HELD, "invalid_input")
    assert "time limit of 60 s" in task.error and "parameters.num_steps" in task.error
