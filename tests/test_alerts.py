"""Alerts reach a Slack-compatible webhook receiver (http.server) and an SMTP server
(aiosmtpd) on loopback, through the database's outbox: gathered into one digest, retried
with backoff, kept across a restart, and sent once by replicas sharing a PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from conftest import free_port, wait_until

from elastic import config
from elastic.errors import ConfigError
from elastic.server.alert_sender import AlertSender
from elastic.server.alerts import Alerts
from elastic.store import NewAlert, Store, open_store

T0 = 1_000_000.0


@dataclass
class WebhookReceiver:
    """A loopback HTTP server recording every JSON body POSTed to it; it answers 500 to
    the first ``failures`` requests."""

    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    requests_seen: int = 0
    failures: int = 0
    released: threading.Event = field(default_factory=threading.Event)  # answers wait for it

    def __post_init__(self) -> None:
        self.released.set()

    def texts(self) -> list[str]:
        return [body["text"] for body in self.bodies]


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            receiver.released.wait(timeout=60)
            with lock:
                receiver.requests_seen += 1
                failing = receiver.requests_seen <= receiver.failures
                if not failing:
                    receiver.bodies.append(body)
            self.send_response(500 if failing else 200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.released.set()
    server.shutdown()
    server.server_close()


@dataclass
class SmtpReceiver:
    """A loopback SMTP server (aiosmtpd) keeping every message it received."""

    port: int
    messages: list[Any] = field(default_factory=list)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    from aiosmtpd.controller import Controller

    receiver = SmtpReceiver(port=free_port())
    controller = Controller(receiver, hostname="127.0.0.1", port=receiver.port)
    controller.start()
    yield receiver
    controller.stop()


def alert_config(webhook: WebhookReceiver, **overrides: Any) -> config.Config:
    return config.load(None, {"alert_webhook_urls": [webhook.url], "alert_gather_seconds": 5.0,
                              "alert_retry_seconds": 5.0, **overrides}, environ={})


def test_a_burst_of_500_failures_is_sent_as_one_digest(
        store: Store, webhook: WebhookReceiver) -> None:
    settings = alert_config(webhook)
    alerts, sender = Alerts(store, settings), AlertSender(store, settings)
    for number in range(500):
        alerts.notify("task.failed", f"t{number}", f"task t{number} failed: boom",
                      now=T0 + number / 100)
    assert sender.send_due(now=T0 + 1) == 0  # still gathering
    assert sender.send_due(now=T0 + 10) == 1
    assert sender.send_due(now=T0 + 20) == 0  # nothing left
    [text] = webhook.texts()
    assert text.startswith("elastic: 500 alerts (500 task.failed)")
    assert "task t0 failed: boom" in text and "... and 480 more" in text


def test_the_same_alert_is_not_repeated_within_alert_repeat_seconds(
        store: Store, webhook: WebhookReceiver) -> None:
    alerts = Alerts(store, alert_config(webhook, alert_repeat_seconds=60.0))
    assert alerts.notify("worker.dead", "pi-1", "worker pi-1 stopped", now=T0) == 1
    assert alerts.notify("worker.dead", "pi-1", "worker pi-1 stopped", now=T0 + 30) == 0
    assert alerts.notify("worker.dead", "pi-2", "worker pi-2 stopped", now=T0 + 30) == 1
    assert alerts.notify("worker.dead", "pi-1", "worker pi-1 stopped", now=T0 + 61) == 1


def test_a_failed_send_is_retried_with_backoff_and_survives_a_restart(
        database_url: str, webhook: WebhookReceiver) -> None:
    settings = alert_config(webhook, alert_gather_seconds=0.0)
    webhook.failures = 1
    first = open_store(database_url)
    Alerts(first, settings).notify("task.failed", "t1", "task t1 failed", now=T0)
    assert AlertSender(first, settings).send_due(now=T0) == 0  # answered 500
    assert AlertSender(first, settings).send_due(now=T0 + 1) == 0  # backing off: not asked
    assert webhook.requests_seen == 1
    first.close()
    restarted = open_store(database_url)  # a new process: the outbox is in the database
    try:
        assert AlertSender(restarted, settings).send_due(now=T0 + 6) == 1
    finally:
        restarted.close()
    assert webhook.texts() == ["elastic task.failed: task t1 failed"]


def test_replicas_on_one_postgresql_claim_each_alert_once(postgres_url: str) -> None:
    replicas = [open_store(postgres_url) for _ in range(4)]
    try:
        replicas[0].enqueue_alerts([NewAlert(
            event="task.failed", subject=f"t{number}", channel="webhook",
            target=f"http://127.0.0.1:9/hook-{number % 5}", text=f"task t{number} failed")
            for number in range(50)], repeat_seconds=0.0, now=T0)
        claims = race([lambda replica=replica, number=number: replica.claim_alerts(
            f"sender-{number}", gather_seconds=0.0, max_tries=3, now=T0 + 1)
            for replica in replicas for number in range(2)])
    finally:
        for replica in replicas:
            replica.close()
    claimed = [alert.id for claim in claims for alert in claim]
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 50


def race(calls: list[Callable[[], list[Any]]]) -> list[list[Any]]:
    """Run ``calls`` in threads released at once by a barrier; their answers."""
    barrier = threading.Barrier(len(calls))
    answers: list[list[Any]] = []

    def run(call: Callable[[], list[Any]]) -> None:
        barrier.wait(timeout=60)
        answers.append(call())

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == len(calls), "a racing call did not finish"
    return answers


def test_a_task_that_fails_for_good_reaches_the_webhook_and_the_mailbox(
        start_orchestrator: Callable[..., Any], webhook: WebhookReceiver,
        smtp: SmtpReceiver) -> None:
    url = start_orchestrator(None, alert_webhook_urls=[webhook.url],
                             alert_emails=["ops@example.org"], smtp_host="127.0.0.1",
                             smtp_port=smtp.port, alert_gather_seconds=0.0,
                             max_task_retries=0).url
    requests.post(f"{url}/api/tasks/submit", timeout=10, json={
        "task_id": "doomed", "type": "evolution_mutation",
        "data": {"genome": {"a": 1.0}, "mutation_rate": 0.1}}).raise_for_status()
    requests.post(f"{url}/api/workers/register", timeout=10,
                  json={"worker_id": "evo", "worker_type": "evolution"}).raise_for_status()
    lease = requests.get(f"{url}/api/workers/evo/tasks", timeout=10).json()["task"]
    requests.post(f"{url}/api/tasks/doomed/result", timeout=10, json={
        "worker_id": "evo", "lease_token": lease["lease_token"],
        "result": {"success": False, "error": "diverged"}}).raise_for_status()
    wait_until(lambda: webhook.bodies and smtp.messages, timeout=30,
               message="the alert on both channels")
    assert "task doomed (evolution_mutation) failed after 1 attempt(s): diverged" in webhook.texts()[0]
    [mail] = smtp.messages
    assert mail["Subject"] == "[elastic] task.failed: doomed"
    assert mail["To"] == "ops@example.org"
    assert "diverged" in mail.get_payload()


def test_a_task_held_by_its_result_is_alerted_with_how_to_release_it(
        start_orchestrator: Callable[..., Any], webhook: WebhookReceiver) -> None:
    url = start_orchestrator(None, alert_webhook_urls=[webhook.url], alert_gather_seconds=0.0).url
    requests.post(f"{url}/api/tasks/submit", timeout=10, json={
        "task_id": "bad-input", "type": "evolution_mutation",
        "data": {"genome": {"a": 1.0}, "mutation_rate": 0.1}}).raise_for_status()
    requests.post(f"{url}/api/workers/register", timeout=10,
                  json={"worker_id": "evo", "worker_type": "evolution"}).raise_for_status()
    lease = requests.get(f"{url}/api/workers/evo/tasks", timeout=10).json()["task"]
    requests.post(f"{url}/api/tasks/bad-input/result", timeout=10, json={
        "worker_id": "evo", "lease_token": lease["lease_token"], "result": {
            "success": False, "retryable": False, "reason": "invalid_input",
            "error": "genome is empty"}}).raise_for_status()
    wait_until(lambda: webhook.bodies, timeout=30, message="the alert")
    assert ("task bad-input held (invalid_input: genome is empty); fix the cause, then "
            "elastic release bad-input") in webhook.texts()[0]


def test_a_dead_worker_a_stalled_queue_and_a_paused_provider_are_alerted(
        start_orchestrator: Callable[..., Any], webhook: WebhookReceiver) -> None:
    url = start_orchestrator(None, alert_webhook_urls=[webhook.url], alert_gather_seconds=0.0,
                             unservable_grace_seconds=0.5).url
    requests.post(f"{url}/api/workers/register", timeout=10,  # never beats again
                  json={"worker_id": "silent", "worker_type": "evolution"}).raise_for_status()
    requests.post(f"{url}/api/tasks/submit", timeout=10, json={"tasks": [{
        "task_id": "sim", "algorithm": "python", "parameters": {
            "num_particles": 100, "num_steps": 5, "seed": 1}}]}).raise_for_status()
    requests.post(f"{url}/api/providers/groq/pause", json={"until": 4_000_000_000},
                  timeout=10).raise_for_status()

    def heard(*words: str) -> bool:
        return any(all(word in text for word in words) for text in webhook.texts())

    wait_until(lambda: heard("worker.dead", "silent") and heard("provider.paused", "groq")
               and heard("queue.stalled", "no online worker runs simulation tasks"),
               timeout=30, message=f"three alerts, got {webhook.texts()}")


def test_a_bad_alert_email_address_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="alert_emails"):
        config.load(None, {"alert_emails": ["not an address"]}, environ={})
    settings = config.load(None, {}, environ={"ELASTIC_ALERT_EMAILS": "a@x.org, b@y.org"})
    assert settings.alert_emails == ("a@x.org", "b@y.org")


def test_pending_work_with_no_task_started_or_ended_for_the_stall_time_is_alerted_once(
        store: Store, webhook: WebhookReceiver) -> None:
    from elastic.tasks import NewTask

    settings = alert_config(webhook, alert_stall_seconds=600.0, alert_gather_seconds=0.0,
                            unservable_grace_seconds=86_400.0)
    alerts, sender = Alerts(store, settings), AlertSender(store, settings)
    store.submit_tasks([NewTask(task_id="waiting", type="evolution_mutation",
                                data={"genome": {"a": 1.0}, "mutation_rate": 0.1})], now=T0)
    alerts.check_queue(now=T0 + 599)
    assert sender.send_due(now=T0 + 599) == 0
    alerts.check_queue(now=T0 + 601)
    alerts.check_queue(now=T0 + 700)  # still stalled: not repeated within alert_repeat_seconds
    assert sender.send_due(now=T0 + 700) == 1
    [text] = webhook.texts()
    assert "queue.stalled: 1 task(s) pending and no task started or ended since" in text


def test_alerts_given_up_after_alert_max_tries_are_never_sent_and_pruned_after_a_week(
        store: Store, webhook: WebhookReceiver) -> None:
    settings = alert_config(webhook, alert_gather_seconds=0.0, alert_max_tries=2,
                            alert_retry_seconds=1.0)
    webhook.failures = 10
    Alerts(store, settings).notify("worker.dead", "pi-1", "worker pi-1 stopped", now=T0)
    sender = AlertSender(store, settings)
    for moment in (T0, T0 + 10, T0 + 100):
        sender.send_due(now=moment)
    assert webhook.requests_seen == 2
    assert store.prune_alerts(older_than=T0 + 1, max_tries=2) == 1


def test_a_webhook_that_hangs_never_holds_up_the_result_that_raised_the_alert(
        start_orchestrator: Callable[..., Any], webhook: WebhookReceiver) -> None:
    webhook.released.clear()  # the receiver answers nothing until the end of the test
    url = start_orchestrator(None, alert_webhook_urls=[webhook.url], alert_gather_seconds=0.0,
                             max_task_retries=0).url
    requests.post(f"{url}/api/workers/register", timeout=10,
                  json={"worker_id": "evo", "worker_type": "evolution"}).raise_for_status()
    for number in range(3):
        requests.post(f"{url}/api/tasks/submit", timeout=10, json={
            "task_id": f"doomed-{number}", "type": "evolution_mutation",
            "data": {"genome": {"a": 1.0}, "mutation_rate": 0.1}}).raise_for_status()
        lease = requests.get(f"{url}/api/workers/evo/tasks", timeout=10).json()["task"]
        answer = requests.post(f"{url}/api/tasks/{lease['task_id']}/result", timeout=10, json={
            "worker_id": "evo", "lease_token": lease["lease_token"],
            "result": {"success": False, "error": "boom"}})
        assert answer.status_code == 200
    assert webhook.bodies == []  # nothing answered yet: the results did not wait for it
    webhook.released.set()
    wait_until(lambda: webhook.bodies, timeout=30, message="the held-up alert")
