"""The evolution tasks' data, validated: ``CrossoverParams`` and ``MutationParams``.

Each reader raises ``InvalidTask`` naming the field that is wrong.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from elastic.errors import InvalidTask
from elastic.evolution.operators import (
    DEFAULT_ALPHA,
    DEFAULT_MUTATION_RATE,
    DEFAULT_SIGMA,
    Bounds,
    Genome,
    is_number,
    iter_leaves,
)

MODES = ("operator", "llm")
DEFAULT_LLM_TEMPERATURE = 0.7


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
