"""Several orchestrators on one database behave as one: wake-ups, expiry, results, budgets, files.

Two ``Store``\\ s (or in-process orchestrators) opened on one database stand for two
replicas; what only processes show (``kill -9``, real workers) is in test_replica_processes.py.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from conftest import wait_until

from elastic.atomic import write_new_json
from elastic.config import Config
from elastic.ingest import ABANDONED_CLAIM_SECONDS, ingest_folder
from elastic.providers.limits import key_fingerprint
from elastic.results import recover_interrupted_exports, write_results_file
from elastic.server.budgets import ProviderBudgets
from elastic.store import Store, open_store
from elastic.store.schema import attempts
from elastic.tasks import NewTask, TaskStatus

T0 = 1_800_000_000.0


def mutation(task_id: str, seed: int = 0) -> NewTask:
    """A tiny evolution_mutation task."""
    return NewTask(task_id=task_id, type="evolution_mutation", priority=5,
                   data={"genome": {"a": 0.5}, "mutation_rate": 0.1, "seed": seed})


@pytest.fixture
def two_stores(database_url: str) -> Iterator[tuple[Store, Store]]:
    """Two stores on one database, as two replicas (or serve and ingest) would open it."""
    first = open_store(database_url, max_retries=3, lease_seconds=30, worker_timeout_seconds=60)
    second = open_store(database_url, upgrade=False, max_retries=3, lease_seconds=30,
                        worker_timeout_seconds=60)
    yield first, second
    first.close()
    second.close()


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` at the same moment, each in its own thread; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


# -- wake-ups --------------------------------------------------------------------------------

def test_a_long_poll_on_one_replica_wakes_at_once_when_another_replica_queues_a_task(
        start_orchestrator: Callable[..., Any], postgres_url: str) -> None:
    first = start_orchestrator(postgres_url)
    second = start_orchestrator(postgres_url)
    for orchestrator in (first, second):  # only LISTEN/NOTIFY can wake a poll within 30 s
        orchestrator.store.changes.poll_seconds = 30.0
        orchestrator.store.changes.listening_poll_seconds = 30.0
    requests.post(f"{first.url}/api/workers/register", timeout=10,
                  json={"worker_id": "w1", "worker_type": "evolution"}).raise_for_status()
    answers: list[tuple[float, dict[str, Any]]] = []
    poll = threading.Thread(target=lambda: answers.append((time.monotonic(), requests.get(
        f"{first.url}/api/workers/w1/tasks", params={"wait": 25}, timeout=40).json())))
    poll.start()
    wait_until(lambda: first.store.changes.is_listening, message="the first replica to LISTEN")

    submitted_at = time.monotonic()
    requests.post(f"{second.url}/api/tasks/submit", timeout=10,
                  json={"task_id": "wake-me", "type": "evolution_mutation",
                        "data": {"genome": {"a": 0.5}, "mutation_rate": 0.1}}).raise_for_status()
    poll.join(timeout=40)

    [(answered_at, answer)] = answers
    assert answer["task"]["task_id"] == "wake-me"
    assert answered_at - submitted_at < 5.0  # a poll fallback would take 30 s


@pytest.fixture
def two_postgres_stores(postgres_url: str) -> Iterator[tuple[Store, Store]]:
    """Two stores on one PostgreSQL database (SQLite has no LISTEN: its waiters poll)."""
    first, second = open_store(postgres_url), open_store(postgres_url, upgrade=False)
    yield first, second
    first.close()
    second.close()


def test_a_lost_listen_connection_is_reopened_and_waiters_poll_meanwhile(
        two_postgres_stores: tuple[Store, Store], caplog: pytest.LogCaptureFixture) -> None:
    waiting, writing = two_postgres_stores
    waiting.changes.poll_seconds = 0.2
    waiting.changes.listening_poll_seconds = 30.0
    waiting.changes.start_listening()
    wait_until(lambda: waiting.changes.is_listening, message="LISTEN")
    database = waiting.engine.url.database

    with caplog.at_level(logging.WARNING, logger="elastic.store.notify"):
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres",
                             autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND query LIKE 'LISTEN%%'", (database,))
        wait_until(lambda: "not listening" in caplog.text, message="the warning")
    wait_until(lambda: waiting.changes.is_listening, message="LISTEN again")

    seen = waiting.changes.version
    started = time.monotonic()
    writing.submit_tasks([mutation("after")])  # the other store: only its NOTIFY reaches us
    while waiting.changes.version == seen and time.monotonic() - started < 20:
        waiting.changes.wait_for_change(seen, 20)
    assert waiting.changes.version != seen and time.monotonic() - started < 5.0


# -- expiry and results ----------------------------------------------------------------------

def test_expiry_on_two_replicas_at_once_ends_each_lease_once(
        two_stores: tuple[Store, Store]) -> None:
    first, second = two_stores
    first.submit_tasks([mutation(f"t{n}", n) for n in range(30)], now=T0)
    first.register_worker("w1", worker_type="evolution", capabilities={}, capacity=30, now=T0)
    assert len(first.lease_tasks("w1", limit=30, now=T0)) == 30
    first.heartbeat("w1", now=T0 + 25)  # alive: only the leases run out

    reports = race(lambda: first.expire_leases(now=T0 + 56),
                   lambda: second.expire_leases(now=T0 + 56))

    requeued = [task_id for report in reports for task_id in report.tasks_requeued]
    assert sorted(requeued) == sorted(f"t{n}" for n in range(30))
    tasks = first.list_tasks()
    assert {(t.status, t.worker_deaths, t.failures, t.attempts) for t in tasks} == {
        (TaskStatus.PENDING, 1, 0, 1)}  # a lease nobody renewed: its worker went silent
    with first.engine.connect() as connection:
        outcomes = Counter(row.outcome for row in connection.execute(attempts.select()))
    assert outcomes == {"expired": 30}


def test_two_replicas_write_each_ended_task_to_exactly_one_results_file(
        two_stores: tuple[Store, Store], tmp_path: Path) -> None:
    first, second = two_stores
    first.submit_tasks([mutation(f"t{n}", n) for n in range(40)], now=T0)
    first.register_worker("w1", worker_type="evolution", capabilities={}, capacity=40, now=T0)
    for lease in first.lease_tasks("w1", limit=40, now=T0):
        first.record_result(lease.task.task_id, worker_id="w1", lease_token=lease.lease_token,
                            result={"success": True}, now=T0 + 1)

    written = race(*[lambda store=store: write_results_file(store, tmp_path, now=T0 + 2)
                     for store in (first, second, first, second)])

    files = [path for path in written if path is not None]
    assert len(set(files)) == len(files) == len(list(tmp_path.glob("task_results_*.json")))
    exported = Counter(entry["task_id"] for path in files
                       for entry in json.loads(path.read_text())["task_results"])
    assert exported == Counter(f"t{n}" for n in range(40))
    assert write_results_file(second, tmp_path, now=T0 + 3) is None


def test_a_results_claim_whose_writer_died_runs_out_and_another_replica_writes_it(
        two_stores: tuple[Store, Store], tmp_path: Path) -> None:
    first, second = two_stores
    first.submit_tasks([mutation("lost")], now=T0)
    first.register_worker("w1", worker_type="evolution", capabilities={}, now=T0)
    [lease] = first.lease_tasks("w1", now=T0)
    first.record_result("lost", worker_id="w1", lease_token=lease.lease_token,
                        result={"success": True}, now=T0 + 1)
    assert [t.task_id for t in first.claim_tasks_to_export("b1", now=T0 + 2)] == ["lost"]
    # ... then dies before writing its file

    assert write_results_file(second, tmp_path, now=T0 + 60) is None
    assert recover_interrupted_exports(second, tmp_path, now=T0 + 2 + 301) == 1  # ran out
    path = write_results_file(second, tmp_path)
    assert path is not None
    assert [e["task_id"] for e in json.loads(path.read_text())["task_results"]] == ["lost"]


def test_files_written_at_once_under_one_name_never_overwrite_each_other(tmp_path: Path) -> None:
    paths = race(*[lambda n=n: write_new_json(tmp_path, "task_results_same_second", {"n": n})
                   for n in range(12)])

    assert len(set(paths)) == 12
    assert sorted(json.loads(path.read_text())["n"] for path in paths) == list(range(12))
    assert not list(tmp_path.glob(".*"))


# -- provider budgets ------------------------------------------------------------------------

def budgets_of(store: Store, requests_per_minute: int = 3) -> ProviderBudgets:
    """The budgets a replica serves, with ``groq`` at ``requests_per_minute``."""
    settings = Config(providers={"groq": {"limits": {"requests_per_minute": requests_per_minute}}})
    return ProviderBudgets.from_config(store, settings)


def test_racing_workers_through_two_replicas_get_exactly_the_budgets_requests(
        two_stores: tuple[Store, Store]) -> None:
    replicas = [budgets_of(store) for store in two_stores]
    key = key_fingerprint("gsk_the_key_all_workers_share")

    answers = race(*[lambda n=n: replicas[n % 2].reserve("groq", 100, worker_id=f"w{n}",
                                                          key_id=key, now=T0 + n / 100)
                     for n in range(10)])

    assert sum(answer["granted"] for answer in answers) == 3
    refused = [answer for answer in answers if not answer["granted"]]
    assert all(T0 + 60 <= answer["retry_at"] <= T0 + 61 for answer in refused)
    assert replicas[1].availability("groq", 0, key_id=key, now=T0 + 1)["token_allowance"] == 0


def test_each_api_key_has_its_own_budget_and_a_keyless_pause_rests_them_all(
        two_stores: tuple[Store, Store]) -> None:
    first, second = (budgets_of(store, requests_per_minute=1) for store in two_stores)
    key_a, key_b = key_fingerprint("key-a"), key_fingerprint("key-b")
    assert first.reserve("groq", 10, worker_id="w1", key_id=key_a, now=T0)["granted"]
    assert not second.reserve("groq", 10, worker_id="w2", key_id=key_a, now=T0 + 1)["granted"]
    assert second.reserve("groq", 10, worker_id="w2", key_id=key_b, now=T0 + 1)["granted"]

    first.pause("groq", T0 + 500, now=T0 + 2)

    refused = second.reserve("groq", 10, worker_id="w2", key_id=key_b, now=T0 + 100)
    assert not refused["granted"] and refused["retry_at"] == T0 + 500
    shown = second.snapshots(now=T0 + 100)["groq"]
    assert shown["cooldown_until"] == T0 + 500
    assert set(shown["keys"]) == {key_a, key_b}
    assert all(budget["cooldown_until"] == T0 + 500 for budget in shown["keys"].values())


def test_a_budget_survives_a_restart_of_every_replica(database_url: str) -> None:
    key = key_fingerprint("gsk_survivor")
    before = open_store(database_url)
    granted = budgets_of(before).reserve("groq", 50, worker_id="w1", key_id=key, now=T0)
    budgets_of(before).settle("groq", granted["reservation_id"], 42, key_id=key, now=T0 + 1)
    budgets_of(before).pause("groq", T0 + 30, key_id=key, now=T0 + 1)
    before.close()

    after = open_store(database_url)
    try:
        usage = after.provider_budget_usage("groq", key, since=T0 - 60)
        shown = budgets_of(after).availability("groq", 0, key_id=key, now=T0 + 2)
    finally:
        after.close()
    assert [(r.at, r.tokens) for r in usage.requests] == [(T0, 42)]
    assert shown["snapshot"]["remaining_requests_per_minute"] == 2
    assert shown["available_at"] == T0 + 30


def test_a_budget_request_naming_a_raw_key_is_refused_without_echoing_it(
        start_orchestrator: Callable[..., Any]) -> None:
    orchestrator = start_orchestrator()
    raw_key = "gsk_RAW_key_that_must_not_be_echoed"

    answer = requests.post(f"{orchestrator.url}/api/providers/groq/reserve", timeout=10,
                           json={"estimated_tokens": 1, "worker_id": "w", "key_id": raw_key})

    assert answer.status_code == 400 and "key_id" in answer.json()["error"]
    assert raw_key not in answer.text


# -- task_queues/ ----------------------------------------------------------------------------

def batch_text(number: int) -> str:
    """A seed-000 batch of two tiny mutations, different for each ``number``."""
    return json.dumps({"tasks": [{"type": "evolution_mutation", "data": {
        "genome": {"a": 0.5}, "mutation_rate": 0.1, "seed": 2 * number + n}} for n in range(2)]})


def test_two_replicas_watching_one_folder_take_each_file_exactly_once(
        two_stores: tuple[Store, Store], tmp_path: Path) -> None:
    folder = tmp_path / "task_queues"
    folder.mkdir()
    for number in range(30):
        (folder / f"batch_{number:02d}.json").write_text(batch_text(number))
    (folder / "broken.json").write_text("{not json")
    now = time.time() + 10

    reports = race(*[lambda store=store: ingest_folder(store, folder, now=now)
                     for store in two_stores])

    accepted = [a.name for report in reports for a in report.accepted]
    rejected = [r.name for report in reports for r in report.rejected]
    assert sorted(accepted) == [f"batch_{n:02d}.json" for n in range(30)] and rejected == ["broken.json"]
    assert len(list((folder / "processed").iterdir())) == 30
    assert sorted(p.name for p in (folder / "rejected").iterdir()) == ["broken.error.json",
                                                                        "broken.json"]
    assert sorted(p.name for p in folder.iterdir()) == ["processed", "rejected"]
    assert two_stores[0].count_tasks()["total"] == 60


def test_a_file_claimed_by_a_process_that_died_is_taken_back_and_queued(
        store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "task_queues"
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (folder / f".here.json~{socket.gethostname()}~{dead}.claim").write_text(batch_text(1))
    elsewhere = folder / ".elsewhere.json~another-host~1.claim"
    elsewhere.write_text(batch_text(2))
    claimed_at = elsewhere.stat().st_ctime

    first = ingest_folder(store, folder, now=claimed_at + 10)
    later = ingest_folder(store, folder, now=claimed_at + ABANDONED_CLAIM_SECONDS + 10)

    assert [a.name for a in first.accepted] == ["here.json"]  # its process is gone
    assert [a.name for a in later.accepted] == ["elsewhere.json"]  # its claim ran out
    assert store.count_tasks()["total"] == 4
    assert sorted(p.name for p in folder.iterdir()) == ["processed"]


# -- schema ----------------------------------------------------------------------------------

def test_replicas_starting_together_on_an_empty_database_migrate_it_once() -> None:
    name = f"elastic_empty_{os.getpid()}_{int(time.time() * 1000) % 100000}"
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        if os.environ.get("CI"):
            raise
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not running")
    try:
        opened = race(*[lambda: open_store(f"postgresql://postgres@127.0.0.1:5432/{name}")
                        for _ in range(3)])
        for store in opened:
            store.submit_tasks([mutation("same")])
            store.close()
        checked = open_store(f"postgresql://postgres@127.0.0.1:5432/{name}", upgrade=False)
        assert checked.count_tasks()["total"] == 1
        checked.close()
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
