"""LLM mode of the evolution tasks: ask the worker's provider for the offspring.

The answer must be a genome of the parents' shape (same keys, same value kinds,
within the bounds); when there is no provider, the provider fails, or the answer is
not such a genome, the operator's result is used instead, saying why.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from elastic.evolution.operators import Bounds, Genome, is_number, iter_leaves, join_path, union_keys
from elastic.evolution.params import CrossoverParams, MutationParams

if TYPE_CHECKING:
    from elastic.executors.base import ExecutionContext

MAX_ANSWER_CHARS = 200_000
SYSTEM_PROMPT = (
    "You are a genetic operator inside an evolutionary algorithm. "
    "You answer with exactly one JSON object and no other text."
)


def find_first_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (e.g. inside a ```json fence), or None."""
    decoder = json.JSONDecoder()
    text = text[:MAX_ANSWER_CHARS]
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def conform_offspring(
    candidate: Any, parents: Sequence[Mapping[str, Any]], bounds: Mapping[str, Sequence[float]],
    path: str = "",
) -> Genome:
    """``candidate`` as a genome with exactly the parents' keys and value types.

    Numbers are normalised to the parents' type (``3.0`` for an int gene gives ``3``)
    and must lie within ``bounds``.

    Raises:
        ValueError: saying what does not match.
    """
    where = f" at {path!r}" if path else ""
    if not isinstance(candidate, dict):
        raise ValueError(f"expected a JSON object{where}, got {type(candidate).__name__}")
    expected = union_keys(*parents)
    missing = [key for key in expected if key not in candidate]
    extra = [key for key in candidate if key not in expected]
    if missing or extra:
        raise ValueError(f"keys differ{where}: missing {missing}, unexpected {extra}")
    return {
        key: _conform_value(candidate[key], [p[key] for p in parents if key in p], bounds,
                            join_path(path, key))
        for key in expected
    }


def _conform_value(
    value: Any, references: list[Any], bounds: Mapping[str, Sequence[float]], path: str
) -> Any:
    """One gene of a candidate, checked against the parents' genes at the same path."""
    objects = [ref for ref in references if isinstance(ref, dict)]
    if isinstance(value, dict) and objects:
        return conform_offspring(value, objects, bounds, path)
    if isinstance(value, list) and any(isinstance(ref, list) for ref in references):
        return _conform_list(value, bounds, path)
    if is_number(value):
        return _conform_number(value, references, bounds.get(path), path)
    kinds = {type(ref) for ref in references}
    if type(value) in kinds and isinstance(value, bool | str | type(None)):
        return value
    wanted = " or ".join(sorted(_kind_name(ref) for ref in references))
    raise ValueError(f"{path!r} should be {wanted}, got {_kind_name(value)}")


def _conform_list(value: list[Any], bounds: Mapping[str, Sequence[float]], path: str) -> list[Any]:
    """A list gene: its numbers must be finite and within the list's bounds."""
    for _, leaf in iter_leaves(value):
        if is_number(leaf):
            _check_in_bounds(leaf, bounds.get(path), path)
    return value


def _conform_number(
    value: float, references: list[Any], bound: Sequence[float] | None, path: str
) -> float:
    """A number gene: int where the parents are ints, float where one is a float."""
    if any(isinstance(ref, float) for ref in references):
        value = float(value)
    elif any(is_number(ref) for ref in references):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{path!r} should be an integer, got {value!r}")
        value = int(value)
    else:
        wanted = " or ".join(sorted(_kind_name(ref) for ref in references))
        raise ValueError(f"{path!r} should be {wanted}, got a number")
    _check_in_bounds(value, bound, path)
    return value


def _check_in_bounds(value: float, bound: Sequence[float] | None, path: str) -> None:
    """Raise ValueError if ``value`` is not finite or outside ``bound``."""
    if not math.isfinite(value):
        raise ValueError(f"{path!r} is not a finite number")
    if bound is not None and not bound[0] <= value <= bound[1]:
        raise ValueError(f"{path!r} = {value} is outside the bounds [{bound[0]}, {bound[1]}]")


def _kind_name(value: Any) -> str:
    """The JSON kind of a value, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else type(value).__name__


def _rules_text(parents: Sequence[Mapping[str, Any]], bounds: Bounds | None) -> str:
    """The shape rules every answer must follow, as prompt text."""
    lines = [
        f"The offspring must have exactly these keys: {json.dumps(union_keys(*parents))}.",
        "Every value keeps its type: integers stay integers, decimals stay numbers, "
        "booleans stay true/false, strings stay strings, nested objects keep their keys.",
    ]
    if bounds:
        lines.append(f"Numbers must stay within these inclusive bounds: {json.dumps(bounds)}.")
    lines.append("Answer with the offspring genome as one JSON object and nothing else.")
    return "\n".join(lines)


def crossover_prompt(params: CrossoverParams) -> str:
    """The user message asking an LLM to cross two genomes."""
    parents = (params.genome1, params.genome2)
    return (
        "Combine these two parent genomes into one offspring genome that mixes their "
        "strengths.\n"
        f"Parent 1: {json.dumps(params.genome1, sort_keys=True)}\n"
        f"Parent 2: {json.dumps(params.genome2, sort_keys=True)}\n"
        + _rules_text(parents, params.bounds)
    )


def mutation_prompt(params: MutationParams) -> str:
    """The user message asking an LLM to mutate a genome."""
    return (
        "Mutate this genome: change about "
        f"{params.mutation_rate:.0%} of its numeric and boolean values by small, "
        "plausible amounts and keep the rest.\n"
        f"Genome: {json.dumps(params.genome, sort_keys=True)}\n"
        + _rules_text((params.genome,), params.bounds)
    )


@dataclass(frozen=True, kw_only=True)
class LlmAsk:
    """What LLM mode needs: the prompt, the shape to check, and the operator to fall back to."""

    prompt: str
    parents: Sequence[Mapping[str, Any]]
    bounds: Bounds | None
    model: str | None
    temperature: float
    operator: Callable[[], dict[str, Any]]


def run_llm_mode(ask: LlmAsk, context: ExecutionContext) -> dict[str, Any]:
    """Ask ``context.provider`` for the offspring; fall back to the operator when unusable."""
    if context.provider is None:
        return _fall_back(ask, "no LLM provider on this worker")
    try:
        completion = _ask_once(context.provider, ask)
    except Exception as exc:
        return _fall_back(ask, f"the provider failed: {type(exc).__name__}: {exc}")
    context.check_cancelled()
    used = {"tokens_used": getattr(completion, "tokens_used", None),
            "model": getattr(completion, "model", None)}
    try:
        child = _parse_offspring(getattr(completion, "text", None), ask)
    except ValueError as exc:
        return _fall_back(ask, f"the model's answer is not a valid genome: {exc}") | used
    return {"success": True, "genome": child, "mode_used": "llm"} | used


def _ask_once(provider: Any, ask: LlmAsk) -> Any:
    """One provider call for ``ask``, counted in its limiter, without retries.

    No retries: when the model is busy or rate limited, the operator is the better
    answer. Providers are imported only in LLM mode.
    """
    from elastic.providers.base import ChatRequest, complete_once

    size = max(len(json.dumps(parent)) for parent in ask.parents)
    request = ChatRequest(
        messages=[{"role": "system", "content": SYSTEM_PROMPT},
                  {"role": "user", "content": ask.prompt}],
        model=ask.model,
        temperature=ask.temperature,
        max_tokens=256 + size // 2,
    )
    return complete_once(provider, request)


def _parse_offspring(text: Any, ask: LlmAsk) -> Genome:
    """The genome in the model's answer, checked; raises ValueError."""
    if not isinstance(text, str):
        raise ValueError("the provider returned no text")
    found = find_first_json_object(text)
    if found is None:
        raise ValueError("no JSON object in the answer")
    return conform_offspring(found, ask.parents, ask.bounds or {})


def _fall_back(ask: LlmAsk, reason: str) -> dict[str, Any]:
    """The operator's result, saying why LLM mode was not used."""
    return ask.operator() | {"fallback_reason": reason}
