"""A stand-in for the Gemini API's ``POST /v1beta/models/{model}:generateContent``."""

from __future__ import annotations

from typing import Any

import bottle

from standins.server import ReplyText, ScriptedReply, StandIn

RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
PER_MINUTE_QUOTA = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
PER_DAY_QUOTA = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"


class GeminiStandIn(StandIn):
    """Answers ``generateContent`` like the Gemini API: ``candidates[0].content.parts``,
    ``usageMetadata.totalTokenCount``; errors as google.rpc ``Status`` bodies."""

    def add_routes(self, app: bottle.Bottle) -> None:
        """``POST /v1beta/models/<model>:generateContent`` (the colon is not a bottle wildcard
        here: the whole last segment is taken and split) and ``GET /v1beta/models``."""
        app.route("/<version>/models/<target>", method="POST", callback=self._route)
        app.route("/<version>/models", method="GET",  # the health check of a worker
                  callback=lambda version: {"models": [{"name": "models/gemini-2.0-flash"}]})

    def _route(self, version: str, target: str) -> Any:
        """Answer ``<model>:generateContent``; anything else is a 404."""
        model, _, method = target.partition(":")
        if method != "generateContent":
            return self._respond(status_error(404, "NOT_FOUND", f"unknown method {method}"))
        return self.answer(route_model=model)

    def render_reply(self, reply: ReplyText, request_json: Any, route_model: str | None) -> Any:
        """A ``GenerateContentResponse``."""
        return {
            "candidates": [{
                "content": {"parts": [{"text": reply.text}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }],
            "usageMetadata": {
                "promptTokenCount": reply.prompt_tokens,
                "candidatesTokenCount": reply.tokens - reply.prompt_tokens,
                "totalTokenCount": reply.tokens,
            },
            "modelVersion": reply.model or route_model,
            "responseId": f"standin-{len(self.requests)}",
        }

    def auth_error(self) -> ScriptedReply:
        """The Gemini API's answer to a bad key: 400 INVALID_ARGUMENT, reason API_KEY_INVALID."""
        info = {"@type": ERROR_INFO, "reason": "API_KEY_INVALID", "domain": "googleapis.com"}
        return status_error(400, "INVALID_ARGUMENT",
                            "API key not valid. Please pass a valid API key.", [info])

    def rate_limit_error(self) -> ScriptedReply:
        """A per-minute 429 with ``RetryInfo``."""
        return quota_error(PER_MINUTE_QUOTA, "17s")

    def presented_key(self, headers: dict[str, str]) -> str | None:
        """The ``x-goog-api-key`` header."""
        return headers.get("x-goog-api-key")


def status_error(code: int, status: str, message: str,
                 details: list[dict[str, Any]] | None = None) -> ScriptedReply:
    """A google.rpc ``Status`` error body."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return ScriptedReply(code, {"error": error})


def quota_error(quota_id: str, retry_delay: str | None) -> ScriptedReply:
    """A 429 RESOURCE_EXHAUSTED naming ``quota_id``, with a ``RetryInfo`` when given."""
    details: list[dict[str, Any]] = [{
        "@type": QUOTA_FAILURE,
        "violations": [{
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": quota_id,
            "quotaDimensions": {"location": "global", "model": "gemini-2.0-flash"},
        }],
    }]
    if retry_delay is not None:
        details.append({"@type": RETRY_INFO, "retryDelay": retry_delay})
    return status_error(429, "RESOURCE_EXHAUSTED",
                        "You exceeded your current quota, please check your plan and billing "
                        "details.", details)
