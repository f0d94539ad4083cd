"""Configuration: the ONLY place that knows defaults, elastic.toml, the environment and flags.

Order, later wins: built-in defaults -> elastic.toml -> the seed's environment names
(``MAX_TASK_RETRIES``...) -> ``ELASTIC_*`` environment variables -> command-line flags.
A bad value raises ``ConfigError`` naming the key, where it came from and what is wanted.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elastic.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("elastic.toml")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# A token guarding a reachable server must be at least this long, with this many
# different characters (python -c 'import secrets; print(secrets.token_urlsafe())').
MIN_TOKEN_LENGTH = 16
MIN_TOKEN_DISTINCT_CHARACTERS = 8
# Server threads that long polls may never take: heartbeats, leases and results always
# find one free (see elastic/server/waiters.py).
MIN_FREE_THREADS = 4

# Environment names from the seeds, kept as they were promised to users.
SEED_ENV_NAMES = {
    "max_task_retries": "MAX_TASK_RETRIES",
    "worker_timeout_seconds": "WORKER_TIMEOUT",
    "task_distribution_interval_seconds": "TASK_DISTRIBUTION_INTERVAL",
    "results_path": "RESULTS_STORAGE_PATH",
    "log_level": "LOG_LEVEL",
    "load_balancing": "LOAD_BALANCING_ALGORITHM",
}
# How the orchestrator picks among waiting workers (see elastic/store/balancing.py).
LOAD_BALANCING_POLICIES = ("priority", "least_loaded", "fastest")
# The seed's LOAD_BALANCING_ALGORITHM=round_robin spreads tasks by capacity: least_loaded.
SEED_BALANCING_NAMES = {"round_robin": "least_loaded"}
# ELASTIC_SERVER / ELASTIC_TOKEN / ELASTIC_DATABASE_URL are the interface's names.
ELASTIC_ENV_NAMES = {"server_url": "ELASTIC_SERVER"}


@dataclass(frozen=True, kw_only=True)
class DeclaredWorker:
    """A worker of the declared fleet (a ``[[workers]]`` table of elastic.toml)."""

    worker_id: str
    address: str  # host:port of the worker's --port, where its /health answers
    capacity: int = 1
    algorithms: tuple[str, ...] = ()
    models: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Config:
    """Every setting elastic reads. elastic.toml documents each one."""

    server_url: str = "http://127.0.0.1:5000"
    database_url: str = ""
    token: str | None = None
    host: str = "127.0.0.1"
    port: int = 5000
    insecure: bool = False
    max_task_retries: int = 3
    worker_timeout_seconds: float = 60.0
    lease_seconds: float = 90.0
    heartbeat_interval_seconds: float = 30.0
    poll_interval_seconds: float = 5.0
    expiry_check_interval_seconds: float = 1.0
    task_distribution_interval_seconds: float = 2.0
    results_interval_seconds: float = 10.0
    results_path: str = "results"
    task_queues_path: str = "task_queues"
    state_path: str = ".elastic"
    log_level: str = "INFO"
    max_body_bytes: int = 10 * 1024 * 1024
    server_threads: int = 32
    max_long_polls: int = 24
    max_connections: int = 1000
    max_wait_seconds: float = 60.0
    checkpoint_interval_seconds: float = 30.0
    memory_limit_mb: float = 2048.0
    task_timeout_seconds: float = 3600.0
    max_task_seconds: float = 0.0
    max_worker_deaths: int = 3
    retry_backoff_seconds: float = 2.0
    retry_backoff_max_seconds: float = 60.0
    unservable_grace_seconds: float = 30.0
    pool_idle_seconds: float = 60.0
    load_balancing: str = "priority"
    workers: tuple[DeclaredWorker, ...] = ()
    allow_undeclared_workers: bool = True
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    config_path: str = str(DEFAULT_CONFIG_PATH)

    def resolve(self, relative: str) -> Path:
        """A path from the config, taken relative to the config file's folder."""
        path = Path(relative)
        return path if path.is_absolute() else Path(self.config_path).resolve().parent / path

    def provider_settings(self, name: str) -> dict[str, Any]:
        """The [providers.<name>] table (empty when absent)."""
        return dict(self.providers.get(name, {}))


def weak_token_problem(token: str) -> str | None:
    """Why ``token`` is too weak to guard a server others can reach (None: it is not)."""
    if len(token) < MIN_TOKEN_LENGTH or token != token.strip():
        return f"at least {MIN_TOKEN_LENGTH} characters, without blanks around them"
    if any(character.isspace() for character in token):
        return "no blanks"
    if len(set(token)) < MIN_TOKEN_DISTINCT_CHARACTERS:
        return f"at least {MIN_TOKEN_DISTINCT_CHARACTERS} different characters"
    return None


def _whole(minimum: int) -> tuple[str, Callable[[Any], Any]]:
    def convert(value: Any) -> int:
        number = int(value) if isinstance(value, str) else value
        if isinstance(number, bool) or not isinstance(number, int) or number < minimum:
            raise ValueError
        return number
    return f"a whole number >= {minimum}", convert


def _quantity(unit: str, minimum: float) -> tuple[str, Callable[[Any], Any]]:
    """A converter for a number of ``unit`` (seconds, megabytes...) of at least ``minimum``."""
    def convert(value: Any) -> float:
        number = float(value) if isinstance(value, str | int) and not isinstance(value, bool) else value
        if not isinstance(number, float) or not number >= minimum:
            raise ValueError
        return number
    return f"a number of {unit} >= {minimum}", convert


def _seconds(minimum: float) -> tuple[str, Callable[[Any], Any]]:
    return _quantity("seconds", minimum)


def _megabytes(minimum: float) -> tuple[str, Callable[[Any], Any]]:
    return _quantity("megabytes", minimum)


def _http_url(value: Any) -> str:
    """An orchestrator's URL, with its scheme."""
    url = _text(value)
    if not url.startswith(("http://", "https://")):
        raise ValueError
    return url


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError
    return value


def _optional_text(value: Any) -> str | None:
    return None if value in (None, "") else _text(value)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError


def _log_level(value: Any) -> str:
    level = str(value).upper()
    if level not in LOG_LEVELS:
        raise ValueError
    return level


def _load_balancing(value: Any) -> str:
    policy = str(value).strip().lower().replace("-", "_")
    policy = SEED_BALANCING_NAMES.get(policy, policy)
    if policy not in LOAD_BALANCING_POLICIES:
        raise ValueError
    return policy


def _providers(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError
    return value


CONVERTERS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "server_url": ("a URL with its scheme, such as http://127.0.0.1:5000 (add http://)",
                   _http_url),
    "database_url": ("a database URL such as sqlite:///elastic.db", _text),
    "token": ("a non-empty string", _optional_text),
    "host": ("a host name or address", _text),
    "port": ("a port number 0..65535", lambda v: _port(v)),
    "insecure": ("true or false", _flag),
    "max_task_retries": _whole(0),
    "worker_timeout_seconds": _seconds(0.1),
    "lease_seconds": _seconds(0.1),
    "heartbeat_interval_seconds": _seconds(0.05),
    "poll_interval_seconds": _seconds(0.01),
    "expiry_check_interval_seconds": _seconds(0.01),
    "task_distribution_interval_seconds": _seconds(0.01),
    "results_interval_seconds": _seconds(0.01),
    "results_path": ("a folder path", _text),
    "task_queues_path": ("a folder path", _text),
    "state_path": ("a folder path", _text),
    "log_level": ("one of " + ", ".join(LOG_LEVELS), _log_level),
    "max_body_bytes": _whole(1024),
    "server_threads": _whole(2),
    "max_long_polls": _whole(1),
    "max_connections": _whole(16),
    "max_wait_seconds": _seconds(0.0),
    "checkpoint_interval_seconds": _seconds(0.01),
    "memory_limit_mb": _megabytes(1.0),
    "task_timeout_seconds": _seconds(1.0),
    "max_task_seconds": _seconds(0.0),
    "max_worker_deaths": _whole(1),
    "retry_backoff_seconds": _seconds(0.0),
    "retry_backoff_max_seconds": _seconds(0.0),
    "unservable_grace_seconds": _seconds(0.0),
    "pool_idle_seconds": _seconds(0.0),
    "load_balancing": ("one of " + ", ".join(LOAD_BALANCING_POLICIES) + " (the seed's "
                       "round_robin means least_loaded)", lambda v: _load_balancing(v)),
    "providers": ("tables [providers.<name>]", _providers),
    "workers": ("[[workers]] tables, each with id, address (host:port), and optionally "
                "capacity, algorithms, models", lambda v: _declared_workers(v)),
    "allow_undeclared_workers": ("true or false", _flag),
}
# Keys only elastic.toml sets: tables, not single values.
TABLE_KEYS = ("providers", "workers")


def _declared_workers(value: Any) -> tuple[DeclaredWorker, ...]:
    if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
        raise ValueError
    declared = tuple(_declared_worker(entry) for entry in value)
    if len({worker.worker_id for worker in declared}) != len(declared):
        raise ValueError  # an id declared twice
    return declared


def _declared_worker(entry: dict[str, Any]) -> DeclaredWorker:
    if set(entry) - {"id", "address", "capacity", "algorithms", "models"}:
        raise ValueError
    host, _, port = _text(entry.get("address")).rpartition(":")
    if not host or "/" in host:
        raise ValueError
    _port(port)
    names = {key: tuple(_text(item) for item in entry.get(key, []))
             for key in ("algorithms", "models")}
    if not all(isinstance(entry.get(key, []), list) for key in names):
        raise ValueError
    return DeclaredWorker(worker_id=_text(entry.get("id")), address=entry["address"],
                          capacity=_whole(1)[1](entry.get("capacity", 1)), **names)


def _port(value: Any) -> int:
    port = _whole(0)[1](value)
    if port > 65535:
        raise ValueError
    return port


def load(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
         *, environ: Mapping[str, str] | None = None) -> Config:
    """Build the configuration from defaults, the toml file, the environment and ``overrides``.

    Args:
        path: the toml file; ``None`` means ./elastic.toml if it exists. A path given
            explicitly must exist.
        overrides: values from command-line flags; ``None`` values are ignored.
        environ: the environment (``os.environ`` by default).

    Raises:
        ConfigError: naming the key, its source and what is wanted.
    """
    environ = os.environ if environ is None else environ
    config_path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    values: dict[str, Any] = {"config_path": str(config_path)}
    if path is not None or config_path.exists():
        _apply(values, _read_toml(config_path), source=str(config_path))
    for key, name in SEED_ENV_NAMES.items():
        if name in environ:
            _apply(values, {key: environ[name]}, source=f"environment {name}")
    for key in CONVERTERS:
        name = ELASTIC_ENV_NAMES.get(key, f"ELASTIC_{key.upper()}")
        if name in environ and key not in TABLE_KEYS:
            _apply(values, {key: environ[name]}, source=f"environment {name}")
    _apply(values, {k: v for k, v in (overrides or {}).items() if v is not None}, source="flag")
    config = Config(**values)
    if config.server_threads - config.max_long_polls < MIN_FREE_THREADS:
        raise ConfigError("max_long_polls", "config", f"at most server_threads - "
                          f"{MIN_FREE_THREADS} = {config.server_threads - MIN_FREE_THREADS}, so "
                          "that heartbeats and results always find a free thread",
                          config.max_long_polls)
    if not config.database_url:
        default_db = Path(config.config_path).resolve().parent / "elastic.db"
        config = dataclasses.replace(config, database_url=f"sqlite:///{default_db}")
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError("config", str(path), "an existing TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", str(path), f"valid TOML ({exc})") from None


def _apply(values: dict[str, Any], raw: Mapping[str, Any], *, source: str) -> None:
    for key, value in raw.items():
        if key not in CONVERTERS:
            known = ", ".join(sorted(CONVERTERS))
            raise ConfigError(key, source, f"a known key ({known})")
        wanted, convert = CONVERTERS[key]
        try:
            values[key] = convert(value)
        except (ValueError, TypeError):
            shown = "<hidden>" if key == "token" else value
            raise ConfigError(key, source, wanted, shown) from None
