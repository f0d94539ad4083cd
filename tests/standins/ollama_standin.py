"""A stand-in for Ollama's ``POST /api/chat`` (non-streaming), on loopback."""

from __future__ import annotations

from typing import Any

import bottle

from standins.server import ReplyText, ScriptedReply, StandIn

DEFAULT_MODEL = "deepseek-coder:6.7b"


class OllamaStandIn(StandIn):
    """Answers ``/api/chat`` like Ollama: ``message.content``, ``prompt_eval_count`` and
    ``eval_count``; errors as ``{"error": "..."}``."""

    def add_routes(self, app: bottle.Bottle) -> None:
        """``POST /api/chat``, ``GET /api/version`` and ``GET /api/tags`` (the health check
        of a worker)."""
        app.route("/api/chat", method="POST", callback=self.answer)
        app.route("/api/version", method="GET", callback=lambda: {"version": "0.6.0"})
        app.route("/api/tags", method="GET", callback=lambda: {"models": [
            {"name": DEFAULT_MODEL, "model": DEFAULT_MODEL, "size": 1}]})

    def render_reply(self, reply: ReplyText, request_json: Any, route_model: str | None) -> Any:
        """Ollama's final (``done``) chat object."""
        model = reply.model or (request_json or {}).get("model") or DEFAULT_MODEL
        return {
            "model": model,
            "created_at": "2025-01-01T00:00:00.000000Z",
            "message": {"role": "assistant", "content": reply.text},
            "done": True,
            "done_reason": "stop",
            "total_duration": 1_000_000,
            "load_duration": 1000,
            "prompt_eval_count": reply.prompt_tokens,
            "prompt_eval_duration": 1000,
            "eval_count": reply.tokens - reply.prompt_tokens,
            "eval_duration": 1000,
        }

    def auth_error(self) -> ScriptedReply:
        """Ollama's answer to a missing bearer token (only behind an authenticating proxy)."""
        return ScriptedReply(401, {"error": "unauthorized"})

    def rate_limit_error(self) -> ScriptedReply:
        """Ollama's busy answer: 503 once too many requests are pending."""
        return ScriptedReply(503, {"error": "server busy, please try again.  maximum pending "
                                            "requests exceeded"})

    def presented_key(self, headers: dict[str, str]) -> str | None:
        """The bearer token, when there is one."""
        return headers.get("authorization", "").removeprefix("Bearer ") or None


def model_not_found(model: str) -> ScriptedReply:
    """Ollama's 404 for a model that has not been pulled: send it with ``enqueue``."""
    return ScriptedReply(404, {"error": f'model "{model}" not found, try pulling it first'})
