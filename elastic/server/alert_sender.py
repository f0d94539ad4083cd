"""Sending the alert outbox: Slack-compatible webhooks and email, from a background thread.

``AlertSender.send_due`` claims what is due (``Store.claim_alerts``: a guarded UPDATE,
so with several replicas on one PostgreSQL each alert is sent once), sends the alerts
of each target as one message (one alert as it is; several, gathered over
``alert_gather_seconds``, as a digest), and marks them sent, or due again after a
backoff (``alert_retry_seconds`` doubling up to ``alert_retry_max_seconds``) when the
send failed, up to ``alert_max_tries`` tries. It runs in ``elastic serve``'s alert loop,
never in a request.
"""

from __future__ import annotations

import logging
import os
import smtplib
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from itertools import groupby

import requests

from elastic.config import Config
from elastic.server.alerts import EMAIL
from elastic.store import QueuedAlert, Store

log = logging.getLogger("elastic.alerts")

SEND_TIMEOUT_SECONDS = 10.0
DIGEST_LINES = 20  # alerts a digest lists one by one; the rest are counted
KEEP_SENT_SECONDS = 7 * 86_400.0  # sent alerts are deleted after a week


class AlertSender:
    """Send due alerts from the outbox, each target's as one message."""

    def __init__(self, store: Store, config: Config, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.sender_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def send_due(self, *, now: float | None = None) -> int:
        """Send every target's due alerts as one message each; returns the messages sent."""
        now = self.clock() if now is None else now
        claimed = self.store.claim_alerts(self.sender_id, now=now,
                                          gather_seconds=self.config.alert_gather_seconds,
                                          max_tries=self.config.alert_max_tries)
        sent = 0
        by_target = sorted(claimed, key=lambda alert: (alert.channel, alert.target, alert.id))
        for (channel, target), grouped in groupby(by_target, key=lambda a: (a.channel, a.target)):
            alerts = list(grouped)
            sent += self._send_one_message(channel, target, alerts, now)
        return sent

    def prune(self, *, now: float | None = None) -> None:
        """Forget alerts sent (or given up on) more than a week ago."""
        now = self.clock() if now is None else now
        self.store.prune_alerts(older_than=now - KEEP_SENT_SECONDS,
                                max_tries=self.config.alert_max_tries)

    def _send_one_message(self, channel: str, target: str, alerts: list[QueuedAlert],
                          now: float) -> int:
        """Send ``alerts`` as one message to ``target``; returns 1 when it went out."""
        try:
            if channel == EMAIL:
                self._send_email(target, digest_subject(alerts), digest_text(alerts))
            else:
                self._post_webhook(target, digest_text(alerts))
        except (OSError, smtplib.SMTPException, requests.RequestException) as exc:
            self._send_later(target, alerts, exc, now)
            return 0
        self.store.finish_alerts([alert.id for alert in alerts], self.sender_id, now=now)
        return 1

    def _send_later(self, target: str, alerts: list[QueuedAlert], error: Exception,
                    now: float) -> None:
        """Count a failed try and make the alerts due again after the backoff."""
        tries = max(alert.tries for alert in alerts) + 1
        delay = min(self.config.alert_retry_max_seconds,
                    self.config.alert_retry_seconds * 2 ** min(tries - 1, 30))
        if tries >= self.config.alert_max_tries:
            log.error("gave up sending %d alert(s) to %s after %d tries: %s",
                      len(alerts), target, tries, error)
        else:
            log.warning("could not send %d alert(s) to %s (try %d, again in %.0f s): %s",
                        len(alerts), target, tries, delay, error)
        self.store.finish_alerts([alert.id for alert in alerts], self.sender_id,
                                 error=str(error)[:2000], retry_seconds=delay, now=now)

    def _post_webhook(self, url: str, text: str) -> None:
        """POST Slack's ``{"text": ...}``; a non-2xx answer is a failure."""
        answer = requests.post(url, json={"text": text}, timeout=SEND_TIMEOUT_SECONDS)
        if not 200 <= answer.status_code < 300:
            raise requests.HTTPError(f"the webhook answered {answer.status_code}: "
                                     f"{answer.text[:200]}")

    def _send_email(self, addresses: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["From"] = self.config.alert_email_from
        message["To"] = addresses
        message["Subject"] = subject
        message.set_content(text)
        with smtplib.SMTP(self.config.smtp_host, self.config.smtp_port,
                          timeout=SEND_TIMEOUT_SECONDS) as smtp:
            if self.config.smtp_starttls:
                smtp.starttls()
            if self.config.smtp_username:
                smtp.login(self.config.smtp_username, self.config.smtp_password or "")
            smtp.send_message(message)


def digest_subject(alerts: Sequence[QueuedAlert]) -> str:
    """``[elastic] task.failed: sim_001``, or ``[elastic] 500 alerts (500 task.failed)``."""
    if len(alerts) == 1:
        return f"[elastic] {alerts[0].event}: {alerts[0].subject}"
    return f"[elastic] {len(alerts)} alerts ({_event_counts(alerts)})"


def digest_text(alerts: Sequence[QueuedAlert]) -> str:
    """One alert's text, or a digest: the counts by event, the first alerts, how many more."""
    if len(alerts) == 1:
        return alerts[0].text
    lines = [f"elastic: {len(alerts)} alerts ({_event_counts(alerts)})"]
    lines += [f"- {alert.text}" for alert in alerts[:DIGEST_LINES]]
    if len(alerts) > DIGEST_LINES:
        lines.append(f"... and {len(alerts) - DIGEST_LINES} more (elastic tasks --status failed)")
    return "\n".join(lines)


def _event_counts(alerts: Sequence[QueuedAlert]) -> str:
    counts = Counter(alert.event for alert in alerts)
    return ", ".join(f"{count} {event}" for event, count in sorted(counts.items()))
