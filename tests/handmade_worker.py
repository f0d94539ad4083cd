"""A worker driven by hand over HTTP, for client tests that need a task to stay leased.

It registers, leases and reports exactly when a test says so, which a real
worker process (that runs evolution tasks in milliseconds) cannot be made to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests


@dataclass
class HandmadeWorker:
    """A registered worker that leases and reports only when told."""

    server: str
    worker_id: str

    @classmethod
    def register(cls, server: str, worker_id: str, *, task_types: list[str],
                 models: list[str] | None = None) -> HandmadeWorker:
        """Register a worker offering ``task_types`` (and ``models``)."""
        capabilities: dict[str, Any] = {"task_types": task_types, "models": models or []}
        response = requests.post(f"{server}/api/workers/register", timeout=10, json={
            "worker_id": worker_id, "worker_type": "custom", "capabilities": capabilities})
        response.raise_for_status()
        return cls(server, worker_id)

    def lease(self, *, wait_seconds: float = 10.0) -> dict[str, Any]:
        """Lease the next task, waiting up to ``wait_seconds`` for one."""
        response = requests.get(f"{self.server}/api/workers/{self.worker_id}/tasks",
                                params={"wait": wait_seconds}, timeout=wait_seconds + 10)
        response.raise_for_status()
        task = response.json()["task"]
        assert task is not None, f"{self.worker_id} found no task within {wait_seconds} s"
        return dict(task)

    def report(self, task: dict[str, Any], result: dict[str, Any]) -> None:
        """Report ``result`` for a leased task."""
        response = requests.post(f"{self.server}/api/tasks/{task['task_id']}/result", timeout=10,
                                 json={"worker_id": self.worker_id, "result": result,
                                       "lease_token": task["lease_token"]})
        response.raise_for_status()
