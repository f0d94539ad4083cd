"""Genetic operators on JSON genomes: crossover, mutation and bounds.

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
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Genome = dict[str, Any]
Bounds = dict[str, tuple[float, float]]

CROSSOVER_METHODS = ("uniform", "blend", "single_point")
MUTATION_METHOD = "gaussian"
DEFAULT_MUTATION_RATE = 0.1
DEFAULT_SIGMA = 0.1
DEFAULT_ALPHA = 0.0


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
