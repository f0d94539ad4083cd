"""A stand-in for Groq's OpenAI-compatible ``POST /openai/v1/chat/completions``."""

from __future__ import annotations

from typing import Any

import bottle

from standins.server import ReplyText, ScriptedReply, StandIn

DEFAULT_MODEL = "llama-3.3-70b-versatile"


class GroqStandIn(StandIn):
    """Answers chat completions like Groq: ``choices[0].message``, ``usage.total_tokens``;
    errors as ``{"error": {"message", "type", "code"}}``."""

    def add_routes(self, app: bottle.Bottle) -> None:
        """``POST /openai/v1/chat/completions`` and ``GET /openai/v1/models`` (the health
        check of a worker)."""
        app.route("/openai/v1/chat/completions", method="POST", callback=self.answer)
        app.route("/openai/v1/models", method="GET", callback=lambda: {
            "object": "list", "data": [{"id": DEFAULT_MODEL, "object": "model",
                                        "created": 1_735_689_600, "owned_by": "Meta"}]})

    def render_reply(self, reply: ReplyText, request_json: Any, route_model: str | None) -> Any:
        """An OpenAI-style ``chat.completion`` object."""
        model = reply.model or (request_json or {}).get("model") or DEFAULT_MODEL
        return {
            "id": f"chatcmpl-standin-{len(self.requests)}",
            "object": "chat.completion",
            "created": 1_735_689_600,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "logprobs": None,
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.tokens - reply.prompt_tokens,
                "total_tokens": reply.tokens,
            },
            "system_fingerprint": "fp_standin",
            "x_groq": {"id": f"req_standin_{len(self.requests)}"},
        }

    def auth_error(self) -> ScriptedReply:
        """Groq's 401 for a wrong key."""
        return ScriptedReply(401, error_body("Invalid API Key", "invalid_request_error",
                                             "invalid_api_key"))

    def rate_limit_error(self) -> ScriptedReply:
        """Groq's 429 on requests per minute, with ``retry-after``."""
        message = (f"Rate limit reached for model `{DEFAULT_MODEL}` on requests per minute "
                   f"(RPM): Limit {self.max_requests_per_minute}. Please try again in 2s.")
        return ScriptedReply(429, error_body(message, "requests", "rate_limit_exceeded"),
                             {"retry-after": "2"})

    def presented_key(self, headers: dict[str, str]) -> str | None:
        """The bearer token."""
        return headers.get("authorization", "").removeprefix("Bearer ") or None


def error_body(message: str, error_type: str, code: str) -> dict[str, Any]:
    """Groq's error body shape."""
    return {"error": {"message": message, "type": error_type, "code": code}}


def model_not_found(model: str) -> ScriptedReply:
    """Groq's 404 for an unknown model: send it with ``enqueue``."""
    message = f"The model `{model}` does not exist or you do not have access to it."
    return ScriptedReply(404, error_body(message, "invalid_request_error", "model_not_found"))


def daily_limit_reached(kind: str = "tokens per day (TPD)") -> ScriptedReply:
    """Groq's 429 for a per-day limit: send it with ``enqueue``."""
    message = (f"Rate limit reached for model `{DEFAULT_MODEL}` on {kind}: Limit 100000, "
               "Used 99990, Requested 500. Please try again in 9m38.016s.")
    return ScriptedReply(429, error_body(message, "tokens", "rate_limit_exceeded"),
                         {"retry-after": "578"})
