"""A systemd unit that keeps an ``elastic worker`` running on a Pi or a PC.

The unit starts the worker at boot once the network is up, restarts it 5 s after any
exit (``Restart=always``; up to 5 starts in 5 minutes, then systemd says it failed),
and stops it with SIGTERM to the main process only (``KillMode=mixed``): a single
worker hands its tasks back, a pool drains its children, and whatever is left after
``TimeoutStopSec`` is killed. The token belongs in an ``EnvironmentFile`` readable by
root only, never in the unit.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

STOP_TIMEOUT_SECONDS = 45  # above the pool's 30 s drain


def systemd_unit(*, python: str, worker_args: Sequence[str], working_directory: str,
                 user: str, environment_file: str) -> str:
    """The text of the unit running ``python -m elastic worker WORKER_ARGS``."""
    command = shlex.join([python, "-m", "elastic", "worker", *worker_args])
    return f"""[Unit]
Description=elastic worker ({shlex.join(worker_args) or "defaults"})
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=300
StartLimitBurst=5

[Service]
Type=simple
User={user}
WorkingDirectory={working_directory}
# ELASTIC_SERVER, ELASTIC_TOKEN...: keep the token here, readable by root only (chmod 600).
EnvironmentFile=-{environment_file}
ExecStart={command}
Restart=always
RestartSec=5
KillMode=mixed
TimeoutStopSec={STOP_TIMEOUT_SECONDS}

[Install]
WantedBy=multi-user.target
"""
