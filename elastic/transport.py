"""HTTP to the orchestrator: one place that sends JSON and turns answers back into errors.

Used by the worker loop and the CLI; ``elastic.client`` (on httpx) shares its paths and
``error_from_answer``. A JSON ``{"error": ...}`` answer becomes the ``ElasticError`` of
its status; a refused connection becomes ``ServerUnreachable``.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import requests

from elastic.errors import (
    BodyTooLarge,
    Conflict,
    ElasticError,
    InvalidInput,
    InvalidTask,
    NotFound,
    ServerUnreachable,
    Unauthorized,
    UndeclaredWorker,
)

DEFAULT_SERVER = "http://127.0.0.1:5000"
# Where a worker's calls carry the secret its registration was answered (checked by
# elastic/server/identity.py).
WORKER_SECRET_HEADER = "X-Worker-Secret"
WAIT_PATH = "/api/tasks/wait"
MAX_IDS_PER_WAIT = 500  # task ids one POST /api/tasks/wait may name
ERRORS_BY_STATUS: dict[int, type[ElasticError]] = {
    400: InvalidInput, 401: Unauthorized, 403: UndeclaredWorker, 404: NotFound, 409: Conflict,
    413: BodyTooLarge,
}


def task_path(task_id: str, action: str) -> str:
    """``/api/tasks/<id>/<action>`` with the id quoted (ids may hold ``?``, ``#``, ``%``...)."""
    return f"/api/tasks/{quote(task_id, safe='')}/{action}"


def task_status_path(task_id: str) -> str:
    """``/api/tasks/status/<id>`` with the id quoted."""
    return f"/api/tasks/status/{quote(task_id, safe='')}"


def worker_path(worker_id: str, action: str) -> str:
    """``/api/workers/<id>/<action>`` with the id quoted."""
    return f"/api/workers/{quote(worker_id, safe='')}/{action}"


class Transport:
    """A keep-alive session to one orchestrator, with its bearer token."""

    def __init__(self, server: str | None = None, *, token: str | None = None,
                 timeout_seconds: float = 30.0) -> None:
        self.server = (server or os.environ.get("ELASTIC_SERVER") or DEFAULT_SERVER).rstrip("/")
        self.token = token if token is not None else os.environ.get("ELASTIC_TOKEN")
        self.timeout_seconds = timeout_seconds
        self.session = requests.Session()
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"

    @property
    def headers(self) -> Any:
        """The headers sent with every request (add to it, e.g. a worker's secret)."""
        return self.session.headers

    def request(self, method: str, path: str, *, json: Any = None,
                params: dict[str, Any] | None = None,
                timeout_seconds: float | None = None) -> Any:
        """Send one request and return the decoded JSON answer.

        Raises:
            ServerUnreachable: the server could not be reached or did not answer in time.
            ElasticError: the subclass matching the HTTP status, with the server's message.
        """
        url = f"{self.server}{path}"
        try:
            response = self.session.request(method, url, json=json, params=params,
                                            timeout=timeout_seconds or self.timeout_seconds)
        except requests.RequestException as exc:
            raise ServerUnreachable(f"cannot reach the orchestrator at {self.server}: "
                                    f"{type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        try:
            return response.json()
        except ValueError:
            raise ElasticError(f"{method} {path}: the server answered {response.status_code} "
                               "with a body that is not JSON") from None

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET ``path``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        """POST ``json`` to ``path``."""
        return self.request("POST", path, json=json if json is not None else {}, **kwargs)

    def close(self) -> None:
        """Close the keep-alive connections."""
        self.session.close()


def error_from_response(response: requests.Response) -> ElasticError:
    """The ElasticError for an error answer, carrying the server's message."""
    return error_from_answer(response.status_code, response.content, str(response.url))


def error_from_answer(status_code: int, content: bytes, url: str) -> ElasticError:
    """The ElasticError for an error answer's status and body.

    A 400 whose body names the ``field`` (and task ``index``) becomes ``InvalidTask``.
    """
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    message = body.get("error") or f"HTTP {status_code} from {url}"
    if status_code == 400 and isinstance(body.get("field"), str):
        index = body.get("index") if isinstance(body.get("index"), int) else None
        error: ElasticError = InvalidTask(str(body.get("problem") or message),
                                          field=body["field"], index=index)
    else:
        error = ERRORS_BY_STATUS.get(status_code, ElasticError)(message)
    error.http_status = status_code
    return error
