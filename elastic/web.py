"""The HTTP rules every elastic server shares: JSON in and out, auth, body size, errors.

Both the orchestrator (``elastic.server``) and a worker's own status server build
their bottle apps with ``json_app``, so this module must not load the store: a
worker process never imports SQLAlchemy. Every error, including bottle's own
404/405, is answered as ``{"error": "..."}`` JSON with the status of the
``ElasticError`` behind it.
"""

from __future__ import annotations

import hmac
import json
import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bottle
from waitress.server import create_server

from elastic.errors import (
    BodyTooLarge,
    ConfigError,
    CrossSiteRequest,
    ElasticError,
    InvalidInput,
    InvalidTask,
    NotFound,
    Unauthorized,
)
from elastic.tasks import whole_number

log = logging.getLogger("elastic.server")

OPEN_PATHS = frozenset({"/health"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_BODY_BYTES_KEY = "elastic.max_body_bytes"


def json_app(*, token: str | None, max_body_bytes: int) -> bottle.Bottle:
    """A bottle app (never bottle's default one) speaking JSON, with auth and a body limit."""
    app = bottle.Bottle()
    app.config["json.enable"] = False
    app.config[MAX_BODY_BYTES_KEY] = max_body_bytes
    app.install(JsonPlugin(token=token, max_body_bytes=max_body_bytes))
    app.default_error_handler = render_bottle_error
    return app


def listen(app: object, *, host: str, port: int, threads: int, **options: Any) -> Any:
    """A threaded waitress server bound to ``host:port``.

    Raises:
        ConfigError: the address cannot be bound (in use, or not this machine's).
    """
    try:
        return create_server(app, host=host, port=port, threads=threads, ident="elastic",
                             **options)
    except OSError as exc:
        raise ConfigError("port", "flag or config",
                          f"a free port on {host} ({exc.strerror})", port) from None


def render_bottle_error(error: bottle.HTTPError) -> str:
    """Bottle's own errors (unknown route, wrong method) as JSON."""
    bottle.response.content_type = "application/json"
    asked = f"{bottle.request.method} {bottle.request.path}"  # a wrong server URL shows here
    message = {404: f"not found: no such endpoint: {asked}",
               405: f"method not allowed: {asked}"}.get(
        error.status_code, str(error.body or error.status_line))
    return json.dumps({"error": message})


class JsonPlugin:
    """Bearer-token auth, the body-size limit, and ElasticError -> JSON error response."""

    name = "elastic-json"
    api = 2

    def __init__(self, *, token: str | None, max_body_bytes: int) -> None:
        self.token = token
        self.max_body_bytes = max_body_bytes

    def apply(self, callback: Callable[..., Any], route: bottle.Route) -> Callable[..., Any]:
        """Wrap one route."""
        open_route = route.rule in OPEN_PATHS or route.config.get("open", False)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                self._check_origin()
                if not open_route:
                    self._check_token()
                self._check_size()
                if any("\x00" in str(value) for value in kwargs.values()):
                    raise NotFound("not found: a NUL character in the path")
                body = callback(*args, **kwargs)
            except ElasticError as exc:
                return error_response(exc.http_status, exc.message, **error_details(exc))
            except Exception:
                log.exception("unexpected error on %s %s", bottle.request.method, bottle.request.path)
                return error_response(500, "internal error; see the server log")
            finally:
                close_request_body()
            if isinstance(body, dict | list):
                bottle.response.content_type = "application/json"
                return json.dumps(body)
            return body

        return wrapper

    def _check_token(self) -> None:
        if not self.token:
            return
        header = bottle.request.get_header("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                  self.token.encode()):
            raise Unauthorized("missing or wrong bearer token: send 'Authorization: Bearer <token>'")

    def _check_origin(self) -> None:
        """Refuse a state-changing request that a browser sent from another site's page.

        Browsers name the page's site in ``Origin`` on every cross-site POST (a form needs
        no token when none is set, and no preflight); programs such as workers, the CLI
        and curl send none, and the dashboard's own page sends this server's.
        """
        origin = bottle.request.get_header("Origin")
        if origin is None or bottle.request.method in SAFE_METHODS:
            return
        if urllib.parse.urlsplit(origin).netloc != bottle.request.get_header("Host", ""):
            raise CrossSiteRequest(f"cross-site request refused: header 'Origin' is {origin!r}, "
                                   "not this server; use the dashboard this server serves")

    def _check_size(self) -> None:
        length = bottle.request.content_length
        if length > self.max_body_bytes:
            raise BodyTooLarge(f"request body of {length} bytes is over the limit of "
                               f"{self.max_body_bytes} bytes (max_body_bytes)")


def close_request_body() -> None:
    """Close the copy of the request body bottle kept, if it read one.

    Past 100 KB bottle spools a body to a temporary file it never closes; left to the
    garbage collector, inside bottle's request-environ cycle, the file may be freed
    before its wrapper and warn (an error in the tests) at some unrelated moment.
    """
    body = bottle.request.environ.get("bottle.request.body")
    if body is not None:
        body.close()


def error_response(status: int, message: str, **details: Any) -> bottle.HTTPResponse:
    """A JSON error response: ``{"error": message, **details}``."""
    return bottle.HTTPResponse(json.dumps({"error": message, **details}), status=status,
                               headers={"Content-Type": "application/json"})


def error_details(error: ElasticError) -> dict[str, Any]:
    """What an error body carries besides its message: an invalid task's field, index and problem."""
    if not isinstance(error, InvalidTask):
        return {}
    return {"field": error.field, "index": error.index, "problem": error.problem}


def read_json(*, required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object, or an InvalidInput naming the problem.

    Reads at most the app's body-size limit, whatever the Content-Type says (bottle's
    ``request.json`` silently returns None for a wrong one).
    """
    limit = bottle.request.app.config[MAX_BODY_BYTES_KEY]
    raw = bottle.request.body.read(limit + 1)
    if len(raw) > limit:
        raise BodyTooLarge(f"request body is over the limit of {limit} bytes (max_body_bytes)")
    if not raw.strip():
        if required:
            raise InvalidInput("request body: expected a JSON object, got an empty body")
        return {}
    try:
        document = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"request body: not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"request body: expected a JSON object, got {type(document).__name__}")
    return document


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


@dataclass(frozen=True)
class QueryNumber:
    """A numeric query parameter within bounds: read by routes, described in /openapi.json."""

    name: str
    default: float
    minimum: float
    maximum: float
    description: str

    def read(self) -> float:
        """The parameter of the current request, or InvalidInput naming it."""
        raw = bottle.request.query.get(self.name)
        if raw is None or raw == "":
            return self.default
        try:
            value = float(raw)
        except ValueError:
            raise InvalidInput(f"query parameter '{self.name}': expected a number, "
                               f"got {raw!r}") from None
        if not self.minimum <= value <= self.maximum:
            raise InvalidInput(f"query parameter '{self.name}': must be between "
                               f"{self.minimum} and {self.maximum}")
        return value

    def schema(self) -> dict[str, Any]:
        """The JSON schema of the values ``read`` accepts."""
        return {"type": "number", "minimum": self.minimum, "maximum": self.maximum}


@dataclass(frozen=True)
class QueryInteger:
    """A whole-number query parameter within bounds: read by routes, described in /openapi.json."""

    name: str
    default: int
    minimum: int
    maximum: int
    description: str

    def read(self) -> int:
        """The parameter of the current request, or InvalidInput naming it."""
        raw = bottle.request.query.get(self.name)
        if raw is None or raw == "":
            return self.default
        if not raw.isascii() or not raw.isdigit() or not self.minimum <= int(raw) <= self.maximum:
            raise InvalidInput(f"query parameter '{self.name}': expected a whole number from "
                               f"{self.minimum} to {self.maximum}, got {raw!r}")
        return int(raw)

    def schema(self) -> dict[str, Any]:
        """The JSON schema of the values ``read`` accepts."""
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}


def field_of(body: dict[str, Any], name: str, kind: type | tuple[type, ...], *,
             required: bool = True, default: Any = None) -> Any:
    """``body[name]`` checked against ``kind``; InvalidInput names the field when wrong."""
    if name not in body or body[name] is None:
        if required:
            raise InvalidInput(f"field '{name}' is required")
        return default
    value = body[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if int in kinds and float not in kinds:
        number = whole_number(value)
        if number is not None:
            return number  # JSON has one number type: 5.0 is the integer 5
    if isinstance(value, bool) and bool not in kinds:
        raise InvalidInput(f"field '{name}': expected {_kind_names(kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise InvalidInput(f"field '{name}': expected {_kind_names(kinds)}, "
                           f"got {type(value).__name__}")
    return value


def _kind_names(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", dict: "a JSON object",
             list: "a list", bool: "true or false"}
    return " or ".join(names.get(kind, kind.__name__) for kind in kinds)
