"""Load balancing: whether a polling worker should leave the next task to a better one.

Workers pull, so balancing is a refusal: under ``least_loaded`` or ``fastest`` the
store peeks at the task a poll would lease (the most urgent, oldest one it can run)
and answers "nothing for you" when another live worker that can run it is a better
home. Priority order holds across the queue: a worker is never handed a less urgent
task instead. The policies:

- ``priority`` (default): whoever asks first gets the most urgent task.
- ``least_loaded``: left to a worker with a free slot and a smaller share of its
  capacity in flight (in flight / capacity).
- ``fastest``: each worker's measured seconds per task of that type and kernel
  (``worker_speeds``, a moving average of its completed attempts). A slower worker
  leaves the task when the faster ones would get through the whole backlog it can
  serve (and what they run) before it would finish this one; so when a PC and a
  Raspberry Pi are both waiting the PC gets the simulation, and with a long queue
  both work. A worker with no measurement yet takes what it is given (that is how it
  gets one).

A task that has waited ``MAX_DEFER_SECONDS`` is leased to whoever asks, so a better
worker that looks alive but does not ask cannot starve it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from elastic.store.schema import worker_speeds, workers
from elastic.tasks import Worker, WorkerStatus

SPEED_WEIGHT = 0.3  # the weight of the newest attempt in the moving average
MAX_DEFER_SECONDS = 60.0


def record_speed(conn: Connection, *, worker_id: str, task_type: str, algorithm: str | None,
                 seconds: float, now: float) -> None:
    """Fold one completed attempt's duration into the worker's speed for its type and kernel."""
    key = (worker_speeds.c.worker_id == worker_id, worker_speeds.c.task_type == task_type,
           worker_speeds.c.algorithm == (algorithm or ""))
    seconds = max(seconds, 0.0)
    updated = conn.execute(update(worker_speeds).where(*key).values(
        seconds_per_task=worker_speeds.c.seconds_per_task
        + SPEED_WEIGHT * (seconds - worker_speeds.c.seconds_per_task),
        samples=worker_speeds.c.samples + 1, updated_at=now)).rowcount
    if not updated:
        conn.execute(insert(worker_speeds).values(
            worker_id=worker_id, task_type=task_type, algorithm=algorithm or "",
            seconds_per_task=seconds, samples=1, updated_at=now))


def speeds_for(conn: Connection, task_type: str, algorithm: str | None) -> dict[str, float]:
    """Worker id -> measured seconds per task of this type and kernel."""
    rows = conn.execute(select(worker_speeds.c.worker_id, worker_speeds.c.seconds_per_task)
                        .where(worker_speeds.c.task_type == task_type,
                               worker_speeds.c.algorithm == (algorithm or "")))
    return {row.worker_id: row.seconds_per_task for row in rows}


def live_workers(conn: Connection, *, since: float) -> list[Worker]:
    """The workers online with a sign of life since ``since`` (active counts not filled)."""
    rows = conn.execute(select(workers).where(workers.c.status == WorkerStatus.ONLINE.value,
                                              workers.c.last_heartbeat_at >= since)).mappings()
    return [Worker.from_row(row) for row in rows]


def can_run(worker: Worker, task: RowMapping) -> bool:
    """Whether ``worker`` may lease ``task`` (the lease conditions, for one row)."""
    return (task["type"] in worker.task_types
            and (task["algorithm"] is None or task["algorithm"] in worker.algorithms)
            and (not worker.models or task["model"] is None or task["model"] in worker.models))


def leaves_to_others(policy: str, *, me: Worker, task: RowMapping, others: Sequence[Worker],
                     active: Mapping[str, int], speeds: Mapping[str, float], backlog: int,
                     now: float) -> bool:
    """Whether ``me`` should leave ``task`` to one of ``others`` under ``policy``.

    Args:
        active: worker id -> leases held now.
        speeds: worker id -> seconds per task of the task's type and kernel.
        backlog: the pending tasks ``me`` could lease (``task`` among them).
    """
    waiting_since = max(task["created_at"], task["not_before"] or 0.0)
    if policy == "priority" or now - waiting_since > MAX_DEFER_SECONDS:
        return False
    able = [w for w in others if w.worker_id != me.worker_id and can_run(w, task)]
    if policy == "least_loaded":
        return _has_less_loaded(me, able, active)
    return _faster_ones_suffice(me, able, active, speeds, backlog)


def _load(worker: Worker, active: Mapping[str, int]) -> float:
    return active.get(worker.worker_id, 0) / max(worker.capacity, 1)


def _has_less_loaded(me: Worker, able: Sequence[Worker], active: Mapping[str, int]) -> bool:
    mine = _load(me, active)
    return any(active.get(w.worker_id, 0) < w.capacity and _load(w, active) < mine for w in able)


def _faster_ones_suffice(me: Worker, able: Sequence[Worker], active: Mapping[str, int],
                         speeds: Mapping[str, float], backlog: int) -> bool:
    """Whether the faster workers would finish the backlog (and half of what they run)
    before ``me`` finished one task."""
    mine = speeds.get(me.worker_id)
    if mine is None:  # not measured yet: it takes what it is given, and so gets measured
        return False
    faster = [w for w in able if speeds.get(w.worker_id, mine) < mine]
    if not faster:
        return False
    tasks_per_second = sum(w.capacity / max(speeds[w.worker_id], 1e-6) for w in faster)
    queued = backlog + 0.5 * sum(active.get(w.worker_id, 0) for w in faster)
    return queued / tasks_per_second <= mine

