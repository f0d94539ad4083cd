"""Run a stand-in provider on loopback, and the scripted-reply machinery all stand-ins share.

``serve_app(app)`` runs any WSGI app on a free 127.0.0.1 port in a background thread
and yields its base URL. ``StandIn`` is the base of the provider stand-ins: like
simonw/llm's ``MockModel`` it answers from a queue of scripted replies (an echo when
the queue is empty) and records every request it received, so a test can assert
exactly what an SDK sent.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bottle

MINUTE_SECONDS = 60.0


class _QuietHandler(WSGIRequestHandler):
    """A request handler that does not log every request to stderr."""

    def log_message(self, message_format: str, *args: Any) -> None:
        """Say nothing."""


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """wsgiref's server, one thread per request so slow replies do not block others."""

    daemon_threads = True


@contextlib.contextmanager
def serve_app(app: Callable[..., Any], *, port: int = 0) -> Iterator[str]:
    """Serve ``app`` on loopback (a free port, or ``port``) while the block runs; yields
    the base URL."""
    server = make_server("127.0.0.1", port, app, server_class=_ThreadingWSGIServer,
                         handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="standin-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass(frozen=True)
class RecordedRequest:
    """One request a stand-in received: method, path, lower-cased headers, query, JSON body."""

    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    json: Any


@dataclass(frozen=True)
class ScriptedReply:
    """What a stand-in answers: a status, a body (JSON-ready or text), headers, a delay."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0


@dataclass(frozen=True)
class ReplyText:
    """A queued successful answer, rendered in the provider's format when it is taken."""

    text: str
    tokens: int
    prompt_tokens: int
    model: str | None
    delay_seconds: float = 0.0


class StandIn:
    """Base of the provider stand-ins: scripted replies, recorded requests, a bottle app.

    Subclasses add their routes in ``add_routes`` and render replies in the provider's
    wire format (``render_reply``, ``auth_error``, ``rate_limit_error``). Route
    callbacks call ``answer(request_json, headers)``, which records the request and
    takes the next scripted reply.

    Args:
        api_key: when set, a request without this key gets the provider's auth error.
        max_requests_per_minute: when set, requests beyond it in a sliding minute get
            the provider's 429.
    """

    def __init__(self, *, api_key: str | None = None,
                 max_requests_per_minute: int | None = None) -> None:
        self.api_key = api_key
        self.max_requests_per_minute = max_requests_per_minute
        self.requests: list[RecordedRequest] = []
        self.base_url: str | None = None
        self._queue: deque[ScriptedReply | ReplyText] = deque()
        self._arrivals: deque[float] = deque()
        self._lock = threading.Lock()
        self.app = bottle.Bottle()
        self.add_routes(self.app)

    def add_routes(self, app: bottle.Bottle) -> None:
        """Register the provider's endpoints on ``app``."""
        raise NotImplementedError

    def render_reply(self, reply: ReplyText, request_json: Any, route_model: str | None) -> Any:
        """The provider's JSON body for a successful answer."""
        raise NotImplementedError

    def auth_error(self) -> ScriptedReply:
        """The provider's answer to a wrong or missing API key."""
        raise NotImplementedError

    def rate_limit_error(self) -> ScriptedReply:
        """The provider's answer when ``max_requests_per_minute`` is exceeded."""
        raise NotImplementedError

    def presented_key(self, headers: Mapping[str, str]) -> str | None:
        """The API key a request carried (subclasses read their header)."""
        return None

    def enqueue_reply(self, text: str, tokens: int = 10, *, prompt_tokens: int | None = None,
                      model: str | None = None, delay_seconds: float = 0.0) -> None:
        """Queue a successful answer reporting ``tokens`` in total (``prompt_tokens`` of them
        for the prompt; half by default)."""
        prompt = tokens // 2 if prompt_tokens is None else prompt_tokens
        with self._lock:
            self._queue.append(ReplyText(text, tokens, prompt, model, delay_seconds))

    def enqueue_error(self, status: int, body: Any = None,
                      headers: Mapping[str, str] | None = None, *,
                      delay_seconds: float = 0.0) -> None:
        """Queue an error answer: ``status`` with ``body`` (JSON-ready or text) and headers."""
        self.enqueue(ScriptedReply(status, body, dict(headers or {}), delay_seconds))

    def enqueue(self, reply: ScriptedReply) -> None:
        """Queue a ready-made reply (the stand-in modules build the providers' error bodies)."""
        with self._lock:
            self._queue.append(reply)

    def requests_in_last_minute(self, now: float | None = None) -> int:
        """How many requests arrived in the sliding minute before ``now`` (monotonic)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return sum(1 for arrived in self._arrivals if arrived > now - MINUTE_SECONDS)

    @contextlib.contextmanager
    def serving(self, *, port: int = 0) -> Iterator[StandIn]:
        """Serve this stand-in on loopback (a free port, or ``port``: a backend coming
        back where it was) while the block runs (sets ``base_url``)."""
        with serve_app(self.app, port=port) as base_url:
            self.base_url = base_url
            try:
                yield self
            finally:
                self.base_url = None

    def answer(self, route_model: str | None = None) -> Any:
        """Record the current bottle request and answer it (called by route callbacks)."""
        request = bottle.request
        headers = {name.lower(): value for name, value in request.headers.items()}
        body = request.body.read()
        parsed = json.loads(body) if body else None
        recorded = RecordedRequest(request.method, request.path, headers,
                                   dict(request.query.items()), parsed)
        reply = self._take_reply(recorded)
        time.sleep(reply.delay_seconds)
        if isinstance(reply, ReplyText):
            reply = ScriptedReply(200, self.render_reply(reply, parsed, route_model))
        return self._respond(reply)

    def _take_reply(self, recorded: RecordedRequest) -> ScriptedReply | ReplyText:
        """Record ``recorded`` and pick its answer: a key or rate-limit error (neither uses
        up a queued reply), else the next queued reply, else an echo."""
        now = time.monotonic()
        with self._lock:
            self.requests.append(recorded)
            self._arrivals.append(now)
            while self._arrivals and self._arrivals[0] <= now - MINUTE_SECONDS:
                self._arrivals.popleft()
            if self.api_key is not None and self.presented_key(recorded.headers) != self.api_key:
                return self.auth_error()
            if (self.max_requests_per_minute is not None
                    and len(self._arrivals) > self.max_requests_per_minute):
                return self.rate_limit_error()
            queued = self._queue.popleft() if self._queue else None
        return queued or self.echo_reply(recorded.json)

    def echo_reply(self, request_json: Any) -> ReplyText:
        """The default answer: ``echo: <last message>``, with a token count from its words."""
        text = f"echo: {last_message_text(request_json)}"
        words = len(text.split())
        return ReplyText(text, tokens=2 * words, prompt_tokens=words, model=None)

    def _respond(self, reply: ScriptedReply) -> Any:
        """Turn a scripted reply into bottle's response."""
        response = bottle.HTTPResponse(status=reply.status)
        for name, value in reply.headers.items():
            response.set_header(name, value)
        if isinstance(reply.body, (dict, list)):
            response.content_type = "application/json"
            response.body = json.dumps(reply.body)
        else:
            response.body = "" if reply.body is None else str(reply.body)
        return response


def last_message_text(request_json: Any) -> str:
    """The text of the last message in an Ollama/OpenAI (``messages``) or Gemini
    (``contents``) request body, or "" when there is none."""
    if not isinstance(request_json, dict):
        return ""
    if request_json.get("messages"):
        return str(request_json["messages"][-1].get("content", ""))
    if request_json.get("contents"):
        parts = request_json["contents"][-1].get("parts") or [{}]
        return str(parts[0].get("text", ""))
    return ""
