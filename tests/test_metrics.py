"""``GET /metrics`` in Prometheus text format, parsed with prometheus-client's own parser:
on the orchestrator (in-process ``start_orchestrator``, real HTTP on loopback, SQLite and
PostgreSQL) and on a worker's status server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from conftest import free_port, wait_until
from prometheus_client.parser import text_string_to_metric_families

MUTATION = {"type": "evolution_mutation", "priority": 7,
            "data": {"genome": {"param1": 0.7}, "mutation_rate": 0.1}}
TOKEN = "metrics-token-0123456789abcdef"


def scrape(url: str, **headers: str) -> dict[str, list[Any]]:
    """Every sample of ``url``'s /metrics, by sample name, after checking the content type."""
    answer = requests.get(f"{url}/metrics", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    """The one sample of ``name`` whose labels include ``labels``."""
    found = [s.value for s in samples.get(name, [])
             if all(s.labels.get(key) == wanted for key, wanted in labels.items())]
    assert len(found) == 1, f"{name} {labels}: {samples.get(name)}"
    return found[0]


def register_and_lease(url: str, worker_id: str, count: int) -> list[dict[str, Any]]:
    requests.post(f"{url}/api/workers/register", timeout=10, json={
        "worker_id": worker_id, "worker_type": "evolution", "capacity": count}).raise_for_status()
    answer = requests.get(f"{url}/api/workers/{worker_id}/tasks", params={"limit": count},
                          timeout=10).json()
    return answer["tasks"]


def report(url: str, lease: dict[str, Any], worker_id: str, *, success: bool) -> None:
    requests.post(f"{url}/api/tasks/{lease['task_id']}/result", timeout=10, json={
        "worker_id": worker_id, "lease_token": lease["lease_token"],
        "result": {"success": success, "error": None if success else "boom"}}).raise_for_status()


def test_metrics_show_tasks_queue_attempts_workers_and_histograms(
        start_orchestrator: Callable[..., Any], database_url: str) -> None:
    url = start_orchestrator(database_url).url
    requests.post(f"{url}/api/tasks/submit", timeout=10, json={"tasks": [
        {**MUTATION, "task_id": f"m{i}"} for i in range(5)]}).raise_for_status()
    leases = register_and_lease(url, "evo-1", 2)
    report(url, leases[0], "evo-1", success=True)
    report(url, leases[1], "evo-1", success=False)  # retried: back to pending
    samples = scrape(url)
    assert value(samples, "elastic_tasks", state="completed", type="evolution_mutation") == 1
    assert value(samples, "elastic_tasks", state="pending", type="evolution_mutation") == 4
    assert value(samples, "elastic_queue_depth", priority="7") == 4
    assert value(samples, "elastic_oldest_pending_task_age_seconds") >= 0
    assert value(samples, "elastic_task_attempts_total", outcome="failed") == 1
    assert value(samples, "elastic_lease_expiries_total") == 0
    assert value(samples, "elastic_task_retries_total") == 0
    assert value(samples, "elastic_workers", state="busy") == 0
    assert value(samples, "elastic_workers", state="online") == 1
    assert value(samples, "elastic_task_duration_seconds_count", type="evolution_mutation",
                 outcome="completed") == 1
    assert value(samples, "elastic_task_duration_seconds_count", type="evolution_mutation",
                 outcome="failed") == 1
    assert value(samples, "elastic_task_submit_to_start_seconds_count",
                 type="evolution_mutation") == 2
    assert value(samples, "elastic_provider_paused", provider="groq", key_id="") == 0


def test_a_retried_attempt_and_an_expired_lease_are_counted(
        start_orchestrator: Callable[..., Any]) -> None:
    # The lease runs out before the worker is declared dead: an expiry, not a worker death.
    url = start_orchestrator(None, max_task_retries=3, retry_backoff_seconds=0.0,
                             lease_seconds=0.5, worker_timeout_seconds=2.0).url
    requests.post(f"{url}/api/tasks/submit", timeout=10,
                  json={**MUTATION, "task_id": "flaky"}).raise_for_status()
    first = register_and_lease(url, "evo-1", 1)[0]
    report(url, first, "evo-1", success=False)
    register_and_lease(url, "evo-1", 1)  # the retry; evo-1 then falls silent
    wait_until(lambda: value(scrape(url), "elastic_lease_expiries_total") == 1, timeout=30,
               message="the silent worker's lease to expire")
    assert value(scrape(url), "elastic_task_retries_total") == 1
    wait_until(lambda: value(scrape(url), "elastic_workers", state="dead") == 1, timeout=30,
               message="the silent worker to be declared dead")


def test_metrics_need_the_token_when_one_is_set(start_orchestrator: Callable[..., Any]) -> None:
    url = start_orchestrator(None, token=TOKEN).url
    refused = requests.get(f"{url}/metrics", timeout=10)
    assert refused.status_code == 401
    assert "elastic_workers" in scrape(url, Authorization=f"Bearer {TOKEN}")


def test_a_limited_provider_budget_shows_what_it_has_left(
        start_orchestrator: Callable[..., Any]) -> None:
    url = start_orchestrator(None, providers={"groq": {"limits": {"requests_per_minute": 30}}}).url
    samples = scrape(url)
    assert value(samples, "elastic_provider_budget_remaining", provider="groq", unit="requests",
                 window="minute") == 30


def test_a_workers_status_port_serves_prometheus_metrics(
        start_server: Callable[..., Any], start_worker: Callable[..., Any]) -> None:
    server = start_server()
    port = free_port()
    start_worker(server.url, worker_type="evolution", worker_id="evo-status", capacity=2,
                 extra=["--port", str(port)])

    def answers() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok
        except requests.RequestException:
            return False

    wait_until(answers, timeout=30, message="the worker's status port")
    samples = scrape(f"http://127.0.0.1:{port}")
    assert value(samples, "elastic_worker_capacity", worker_id="evo-status") == 2
    assert value(samples, "elastic_worker_results_total", outcome="completed") == 0
    assert value(samples, "elastic_worker_running_tasks") == 0
