"""Racing workers: every task is leased exactly once, on every database."""

from __future__ import annotations

import threading
from collections import Counter

from elastic.store import Store
from elastic.tasks import NewTask

WORKERS = 8
TASKS = 200


def test_every_task_is_leased_once_under_8_racing_workers(store: Store) -> None:
    store.submit_tasks([NewTask(task_id=f"t{i}", type="evolution_mutation",
                                data={"genome": {"a": 1}}, priority=1 + i % 10)
                        for i in range(TASKS)])
    for n in range(WORKERS):
        store.register_worker(f"w{n}", worker_type="evolution", capabilities={}, capacity=TASKS)
    barrier = threading.Barrier(WORKERS)
    claimed: list[list[str]] = [[] for _ in range(WORKERS)]

    def race(n: int) -> None:
        barrier.wait()
        for _ in range(TASKS):
            leases = store.lease_tasks(f"w{n}", limit=1)
            if not leases and store.count_tasks()["pending"] == 0:
                return
            claimed[n] += [lease.task.task_id for lease in leases]

    threads = [threading.Thread(target=race, args=(n,)) for n in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    counts = Counter(task_id for ids in claimed for task_id in ids)
    assert len(counts) == TASKS
    assert set(counts.values()) == {1}
    assert sum(bool(ids) for ids in claimed) > 1, "the race never happened"


def test_results_racing_an_expiry_pass_end_each_task_once(store: Store) -> None:
    store.submit_tasks([NewTask(task_id=f"t{i}", type="evolution_mutation",
                                data={"genome": {"a": 1}}) for i in range(50)], now=0.0)
    store.register_worker("w", worker_type="evolution", capabilities={}, capacity=50, now=0.0)
    leases = store.lease_tasks("w", limit=50, now=0.0)
    barrier = threading.Barrier(2)
    accepted: list[str] = []

    def report() -> None:
        barrier.wait()
        for lease in leases:
            try:
                store.record_result(lease.task.task_id, worker_id="w",
                                    lease_token=lease.lease_token, result={"success": True},
                                    now=1.0)
                accepted.append(lease.task.task_id)
            except Exception as exc:
                assert type(exc).__name__ == "StaleLease"

    def expire() -> None:
        barrier.wait()
        store.expire_leases(now=31.0)

    threads = [threading.Thread(target=report), threading.Thread(target=expire)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    counts = store.count_tasks()
    assert counts["completed"] == len(accepted)
    assert counts["completed"] + counts["pending"] == 50
