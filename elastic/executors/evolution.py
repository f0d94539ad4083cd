"""Genetic operators on JSON genomes, and the two evolution executors.

A genome is a JSON object: ``str`` keys, values that are numbers, booleans,
strings, ``null``, or nested objects and lists. The operators are pure functions
of their inputs and a ``random.Random``, so a task with a ``seed`` gives the same
offspring on every worker and on the client's local fallback.

- ``crossover_genomes``: ``uniform`` (each key from a parent picked at random),
  ``blend`` (numbers drawn from the BLX-alpha interval around the two parents,
  integers stay integers, anything else picked from a parent) or ``single_point``
  (one cut over the sorted keys). Nested objects are crossed key by key; a key
  present in one parent only is inherited from it.
- ``mutate_genome``: each number mutates with probability ``mutation_rate`` by a
  Gaussian step scaled to its bounds (``sigma`` x their width) or to its own
  magnitude, clipped to the bounds; integers stay integers and always move by at
  least 1; booleans flip with the same probability; strings and ``null`` stay.

Bounds map a gene's dotted path (``"layer.size"`` for nested objects; a list's
elements share the list's path) to ``[low, high]``.

The executors ``Crossover`` and ``Mutation`` run these operators, or with
``mode: "llm"`` ask the worker's LLM provider for the offspring and fall back to
the operator when there is no provider, the provider fails, or its answer is not
a genome of the right shape.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from elastic.errors import InvalidTask
from elastic.executors.base import ExecutionContext

Genome = dict[str, Any]
Bounds = dict[str, tuple[float, float]]

CROSSOVER_METHODS = ("uniform", "blend", "single_point")
MODES = ("operator", "llm")
MUTATION_METHOD = "gaussian"
DEFAULT_MUTATION_RATE = 0.1
DEFAULT_SIGMA = 0.1
DEFAULT_ALPHA = 0.0
DEFAULT_LLM_TEMPERATURE = 0.7
MAX_ANSWER_CHARS = 200_000

SYSTEM_PROMPT = (
    "You are a genetic operator inside an evolutionary algorithm. "
    "You answer with exactly one JSON object and no other text."
)


def is_number(value: object) -> bool:
    """Whether ``value`` is an int or float gene (booleans are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


# Crossover ---------------------------------------------------------------------------


def crossover_genomes(
    genome1: Mapping[str, Any],
    genome2: Mapping[str, Any],
    *,
    rng: random.Random | None = None,
    method: str = "uniform",
    alpha: float = DEFAULT_ALPHA,
    bounds: Mapping[str, Sequence[float]] | None = None,
) -> Genome:
    """One offspring of two genomes, with every key of either parent.

    Args:
        rng: the random source; a fresh unseeded one when None.
        method: ``uniform``, ``blend`` or ``single_point``.
        alpha: the BLX-alpha extension for ``blend`` (0 keeps each number
            between its parents).
        bounds: optional ``{path: [low, high]}``; numbers are clipped to them.
    """
    rng = rng or random.Random()
    if method not in CROSSOVER_METHODS:
        raise ValueError(f"unknown crossover method {method!r}")
    if method == "single_point":
        child = _cross_single_point(genome1, genome2, rng)
    else:
        child = _cross_objects(genome1, genome2, rng, blend=method == "blend", alpha=alpha)
    return clip_to_bounds(child, bounds) if bounds else child


def union_keys(*genomes: Mapping[str, Any]) -> list[str]:
    """The keys of all genomes, in first-seen order."""
    return list(dict.fromkeys(key for genome in genomes for key in genome))


def _cross_objects(
    first: Mapping[str, Any], second: Mapping[str, Any], rng: random.Random,
    *, blend: bool, alpha: float,
) -> Genome:
    """Cross two objects key by key (uniform or blend)."""
    child: Genome = {}
    for key in union_keys(first, second):
        if key not in second or key not in first:
            child[key] = copy.deepcopy(first[key] if key in first else second[key])
        else:
            child[key] = _cross_values(first[key], second[key], rng, blend=blend, alpha=alpha)
    return child


def _cross_values(a: Any, b: Any, rng: random.Random, *, blend: bool, alpha: float) -> Any:
    """Cross one gene: recurse into objects, blend numbers, else pick a parent."""
    if isinstance(a, dict) and isinstance(b, dict):
        return _cross_objects(a, b, rng, blend=blend, alpha=alpha)
    if blend and is_number(a) and is_number(b):
        return blend_numbers(a, b, rng, alpha=alpha)
    return copy.deepcopy(a if rng.random() < 0.5 else b)


def blend_numbers(a: float, b: float, rng: random.Random, *, alpha: float = DEFAULT_ALPHA) -> float:
    """BLX-alpha: uniform in [min - alpha*d, max + alpha*d], d = |a - b|.

    Two integers give an integer.
    """
    spread = abs(a - b) * alpha
    low, high = min(a, b) - spread, max(a, b) + spread
    value = float(min(max(rng.uniform(low, high), low), high))
    if isinstance(a, int) and isinstance(b, int):
        return min(max(round(value), math.ceil(low)), math.floor(high))
    return value


def _cross_single_point(
    first: Mapping[str, Any], second: Mapping[str, Any], rng: random.Random
) -> Genome:
    """Keys before a random cut (over the sorted keys) from one parent, the rest from the other."""
    keys = union_keys(first, second)
    ordered = sorted(keys)
    if len(ordered) < 2:
        return _cross_objects(first, second, rng, blend=False, alpha=0.0)
    cut = rng.randrange(1, len(ordered))
    head = set(ordered[:cut])
    child: Genome = {}
    for key in keys:
        preferred, other = (first, second) if key in head else (second, first)
        child[key] = copy.deepcopy(preferred[key] if key in preferred else other[key])
    return child


# Mutation ----------------------------------------------------------------------------


def mutate_genome(
    genome: Mapping[str, Any],
    mutation_rate: float = DEFAULT_MUTATION_RATE,
    *,
    rng: random.Random | None = None,
    bounds: Mapping[str, Sequence[float]] | None = None,
    sigma: float = DEFAULT_SIGMA,
) -> Genome:
    """A mutated copy of ``genome`` (see the module docstring for the rules).

    Args:
        mutation_rate: the probability (0..1) that each number or boolean changes.
        rng: the random source; a fresh unseeded one when None.
        bounds: optional ``{path: [low, high]}``; mutated numbers stay inside.
        sigma: the Gaussian step as a fraction of the bounds' width, or of the
            value's magnitude when the gene has no bounds.
    """
    mutator = _GaussianMutator(rng or random.Random(), mutation_rate, dict(bounds or {}), sigma)
    return mutator.mutate_object(genome, "")


@dataclass(frozen=True)
class _GaussianMutator:
    """The state of one mutation pass."""

    rng: random.Random
    rate: float
    bounds: Mapping[str, Sequence[float]]
    sigma: float

    def mutate_object(self, genome: Mapping[str, Any], path: str) -> Genome:
        """Mutate every gene of an object."""
        return {key: self.mutate_value(item, join_path(path, key)) for key, item in genome.items()}

    def mutate_value(self, value: Any, path: str) -> Any:
        """Mutate one gene (recursing into objects and lists)."""
        if isinstance(value, dict):
            return self.mutate_object(value, path)
        if isinstance(value, list):
            return [self.mutate_value(item, path) for item in value]
        if isinstance(value, bool):
            return (not value) if self.rng.random() < self.rate else value
        if is_number(value) and self.rng.random() < self.rate:
            return self.step_number(value, self.bounds.get(path))
        return value

    def step_number(self, value: float, bound: Sequence[float] | None) -> float:
        """A Gaussian step from ``value``, clipped to ``bound``; ints move by at least 1."""
        if bound is not None:
            scale = (bound[1] - bound[0]) * self.sigma
        else:
            scale = abs(value) * self.sigma or self.sigma
        moved = value + self.rng.gauss(0.0, scale)
        if isinstance(value, int):
            moved = round(moved)
            if moved == value:
                moved = value + self.rng.choice((-1, 1))
        return clip_number(moved, bound) if bound is not None else moved


# Bounds ------------------------------------------------------------------------------


def join_path(path: str, key: str) -> str:
    """The dotted path of ``key`` inside the object at ``path``."""
    return f"{path}.{key}" if path else key


def clip_number(value: float, bound: Sequence[float]) -> float:
    """``value`` clipped to ``[low, high]``; an int is clipped to the integers inside."""
    low, high = bound
    if isinstance(value, int):
        return min(max(value, math.ceil(low)), math.floor(high))
    return float(min(max(value, low), high))


def clip_to_bounds(genome: Mapping[str, Any], bounds: Mapping[str, Sequence[float]]) -> Genome:
    """A copy of ``genome`` with every bounded number clipped."""
    return {key: _clip_value(value, join_path("", key), bounds) for key, value in genome.items()}


def _clip_value(value: Any, path: str, bounds: Mapping[str, Sequence[float]]) -> Any:
    """Clip one gene (recursing into objects and lists)."""
    if isinstance(value, dict):
        return {key: _clip_value(item, join_path(path, key), bounds) for key, item in value.items()}
    if isinstance(value, list):
        return [_clip_value(item, path, bounds) for item in value]
    if is_number(value) and path in bounds:
        return clip_number(value, bounds[path])
    return copy.deepcopy(value)


def iter_leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, leaf value) of a genome; list items share the list's path."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from iter_leaves(item, join_path(path, key))
    elif isinstance(value, list):
        for item in value:
            yield from iter_leaves(item, path)
    else:
        yield path, value


# Validation --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CrossoverParams:
    """A validated evolution_crossover task."""

    genome1: Genome
    genome2: Genome
    method: str = "uniform"
    mode: str = "operator"
    seed: int | None = None
    alpha: float = DEFAULT_ALPHA
    bounds: Bounds | None = None
    model: str | None = None
    temperature: float = DEFAULT_LLM_TEMPERATURE


@dataclass(frozen=True, kw_only=True)
class MutationParams:
    """A validated evolution_mutation task."""

    genome: Genome
    mutation_rate: float = DEFAULT_MUTATION_RATE
    mode: str = "operator"
    seed: int | None = None
    sigma: float = DEFAULT_SIGMA
    bounds: Bounds | None = None
    model: str | None = None
    temperature: float = DEFAULT_LLM_TEMPERATURE


def read_genome(data: Mapping[str, Any], field: str) -> Genome:
    """``data[field]`` as a genome (a JSON object of JSON values), deep-copied."""
    if field not in data:
        raise InvalidTask("is required (a JSON object of genes)", field=field)
    value = data[field]
    if not isinstance(value, Mapping):
        raise InvalidTask(f"must be a JSON object, got {type(value).__name__}", field=field)
    _check_json_value(value, field)
    return copy.deepcopy(dict(value))


def _check_json_value(value: Any, field: str) -> None:
    """Raise InvalidTask unless ``value`` is plain, finite JSON."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidTask(f"keys must be strings, got {key!r}", field=field)
            _check_json_value(item, f"{field}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json_value(item, f"{field}.{index}")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidTask(f"must be a finite number, got {value!r}", field=field)
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise InvalidTask(f"is not a JSON value ({type(value).__name__})", field=field)


def read_choice(data: Mapping[str, Any], field: str, choices: Sequence[str], default: str) -> str:
    """``data[field]`` as one of ``choices`` (``default`` when absent or null)."""
    value = data.get(field)
    if value is None:
        return default
    if value not in choices:
        raise InvalidTask(f"must be one of {', '.join(choices)}, got {value!r}", field=field)
    return value


def read_number(
    data: Mapping[str, Any], field: str, default: float,
    *, low: float = -math.inf, high: float = math.inf,
) -> float:
    """``data[field]`` as a finite number in ``[low, high]`` (``default`` when absent or null)."""
    value = data.get(field)
    if value is None:
        return default
    if not is_number(value) or not math.isfinite(value):
        raise InvalidTask(f"must be a number, got {value!r}", field=field)
    if not low <= value <= high:
        wanted = f"at least {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
        raise InvalidTask(f"must be {wanted}, got {value!r}", field=field)
    return value


def read_seed(data: Mapping[str, Any]) -> int | None:
    """``data["seed"]`` as an integer, or None."""
    value = data.get("seed")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidTask(f"must be an integer, got {value!r}", field="seed")
    return value


def read_model(data: Mapping[str, Any]) -> str | None:
    """``data["model"]`` (the LLM model for mode "llm"), or None for the provider's default."""
    value = data.get("model")
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise InvalidTask(f"must be a non-empty string, got {value!r}", field="model")
    return value


def read_bounds(data: Mapping[str, Any], genomes: Sequence[Mapping[str, Any]]) -> Bounds | None:
    """``data["bounds"]``: ``{path: [low, high]}``, each path naming a numeric gene."""
    value = data.get("bounds")
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidTask("must be a JSON object {gene: [low, high]}", field="bounds")
    numbers = _numeric_leaves(genomes)
    return {path: _read_bound(path, pair, numbers) for path, pair in value.items()}


def _numeric_leaves(genomes: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """The numbers of each genome path."""
    leaves: dict[str, list[float]] = {}
    for genome in genomes:
        for path, value in iter_leaves(genome):
            if is_number(value):
                leaves.setdefault(path, []).append(value)
    return leaves


def _read_bound(path: str, pair: Any, numbers: Mapping[str, list[float]]) -> tuple[float, float]:
    """One bounds entry, checked against the genes it constrains."""
    field = f"bounds.{path}"
    is_pair = isinstance(pair, list | tuple) and len(pair) == 2
    if not is_pair or not all(is_number(x) and math.isfinite(x) for x in pair):
        raise InvalidTask(f"must be [low, high] with two numbers, got {pair!r}", field=field)
    low, high = pair
    if low > high:
        raise InvalidTask(f"low {low} is greater than high {high}", field=field)
    if path not in numbers:
        raise InvalidTask(f"names no numeric gene of the genome ({path!r})", field=field)
    all_ints = all(isinstance(x, int) for x in numbers[path])
    if all_ints and math.ceil(low) > math.floor(high):
        raise InvalidTask(f"[{low}, {high}] holds no integer but the gene is one", field=field)
    return (low, high)


# LLM mode ----------------------------------------------------------------------------


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
class _LlmAsk:
    """What LLM mode needs: the prompt, the shape to check, and the operator to fall back to."""

    prompt: str
    parents: Sequence[Mapping[str, Any]]
    bounds: Bounds | None
    model: str | None
    temperature: float
    operator: Callable[[], dict[str, Any]]


def run_llm_mode(ask: _LlmAsk, context: ExecutionContext) -> dict[str, Any]:
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


def _ask_once(provider: Any, ask: _LlmAsk) -> Any:
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


def _parse_offspring(text: Any, ask: _LlmAsk) -> Genome:
    """The genome in the model's answer, checked; raises ValueError."""
    if not isinstance(text, str):
        raise ValueError("the provider returned no text")
    found = find_first_json_object(text)
    if found is None:
        raise ValueError("no JSON object in the answer")
    return conform_offspring(found, ask.parents, ask.bounds or {})


def _fall_back(ask: _LlmAsk, reason: str) -> dict[str, Any]:
    """The operator's result, saying why LLM mode was not used."""
    return ask.operator() | {"fallback_reason": reason}


# Executors ---------------------------------------------------------------------------


class Crossover:
    """evolution_crossover: one offspring of ``genome1`` and ``genome2``."""

    name = "evolution_crossover"

    def validate(self, data: Mapping[str, Any]) -> CrossoverParams:
        """Check the task data; raises ``InvalidTask`` naming the field."""
        genome1, genome2 = read_genome(data, "genome1"), read_genome(data, "genome2")
        return CrossoverParams(
            genome1=genome1,
            genome2=genome2,
            method=read_choice(data, "method", CROSSOVER_METHODS, "uniform"),
            mode=read_choice(data, "mode", MODES, "operator"),
            seed=read_seed(data),
            alpha=read_number(data, "alpha", DEFAULT_ALPHA, low=0.0),
            bounds=read_bounds(data, [genome1, genome2]),
            model=read_model(data),
            temperature=read_number(data, "temperature", DEFAULT_LLM_TEMPERATURE,
                                    low=0.0, high=2.0),
        )

    def run(self, params: CrossoverParams, context: ExecutionContext) -> dict[str, Any]:
        """Cross the genomes with the operator, or the LLM in mode "llm"."""
        context.check_cancelled()
        if params.mode != "llm":
            return self.run_operator(params)
        ask = _LlmAsk(prompt=crossover_prompt(params), parents=(params.genome1, params.genome2),
                      bounds=params.bounds, model=params.model, temperature=params.temperature,
                      operator=lambda: self.run_operator(params))
        return run_llm_mode(ask, context)

    def run_operator(self, params: CrossoverParams) -> dict[str, Any]:
        """The operator's result for ``params``."""
        child = crossover_genomes(params.genome1, params.genome2, rng=random.Random(params.seed),
                                  method=params.method, alpha=params.alpha, bounds=params.bounds)
        return {"success": True, "genome": child, "method": params.method,
                "mode_used": "operator"}


class Mutation:
    """evolution_mutation: a mutated copy of ``genome``."""

    name = "evolution_mutation"

    def validate(self, data: Mapping[str, Any]) -> MutationParams:
        """Check the task data; raises ``InvalidTask`` naming the field."""
        genome = read_genome(data, "genome")
        return MutationParams(
            genome=genome,
            mutation_rate=read_number(data, "mutation_rate", DEFAULT_MUTATION_RATE,
                                      low=0.0, high=1.0),
            mode=read_choice(data, "mode", MODES, "operator"),
            seed=read_seed(data),
            sigma=read_number(data, "sigma", DEFAULT_SIGMA, low=0.0),
            bounds=read_bounds(data, [genome]),
            model=read_model(data),
            temperature=read_number(data, "temperature", DEFAULT_LLM_TEMPERATURE,
                                    low=0.0, high=2.0),
        )

    def run(self, params: MutationParams, context: ExecutionContext) -> dict[str, Any]:
        """Mutate the genome with the operator, or the LLM in mode "llm"."""
        context.check_cancelled()
        if params.mode != "llm":
            return self.run_operator(params)
        ask = _LlmAsk(prompt=mutation_prompt(params), parents=(params.genome,),
                      bounds=params.bounds, model=params.model, temperature=params.temperature,
                      operator=lambda: self.run_operator(params))
        return run_llm_mode(ask, context)

    def run_operator(self, params: MutationParams) -> dict[str, Any]:
        """The operator's result for ``params``."""
        child = mutate_genome(params.genome, params.mutation_rate, rng=random.Random(params.seed),
                              bounds=params.bounds, sigma=params.sigma)
        return {"success": True, "genome": child, "method": MUTATION_METHOD,
                "mutation_rate": params.mutation_rate, "mode_used": "operator"}
