"""The worker-type table: what each ``elastic worker --type`` runs, and through which provider.

This is the one place for the seed's compatibility table. The CLI's ``--type`` and
``--llm-type`` choices, the capabilities a worker registers with, the provider it
opens, the server's defaults for a registering worker and the worker types
``elastic run`` starts for a batch are all read from ``WORKER_TYPES``. Adding a type
is one entry here. Like ``elastic.tasks`` it imports no store, server or executor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from elastic.errors import ConfigError
from elastic.tasks import EVOLUTION_TASK_TYPES, LLM_TASK_TYPES, NewTask, needs_llm

DISTRIBUTION = "elastic-orchestrator"


@dataclass(frozen=True)
class WorkerType:
    """One ``--type``: the task types it runs, and for an LLM type its provider and SDK extra.

    ``sdk_extra`` is the optional extra of the ``elastic-orchestrator`` distribution
    that installs the provider's SDK (``pip install 'elastic-orchestrator[groq]'``).
    """

    name: str
    task_types: tuple[str, ...]
    provider: str | None = None
    sdk_extra: str | None = None

    @property
    def is_llm(self) -> bool:
        """Whether the worker calls an LLM provider."""
        return self.provider is not None

    def runs(self, task_type: str, data: Mapping[str, Any]) -> bool:
        """Whether a worker of this type can run a task of ``task_type`` with ``data``."""
        return task_type in self.task_types and (self.is_llm or not needs_llm(task_type, data))


WORKER_TYPES: dict[str, WorkerType] = {kind.name: kind for kind in (
    WorkerType("deepseek", (*LLM_TASK_TYPES, *EVOLUTION_TASK_TYPES), provider="ollama",
               sdk_extra="ollama"),
    WorkerType("groq", LLM_TASK_TYPES, provider="groq", sdk_extra="groq"),
    WorkerType("gemini", LLM_TASK_TYPES, provider="gemini", sdk_extra="gemini"),
    WorkerType("simulation", ("simulation",)),
    WorkerType("evolution", EVOLUTION_TASK_TYPES),
    # Does nothing and answers at once: what `elastic bench` moves to measure dispatch.
    WorkerType("noop", ("noop",)),
)}

LLM_WORKER_TYPES = tuple(name for name, kind in WORKER_TYPES.items() if kind.is_llm)


def get_worker_type(name: str) -> WorkerType:
    """The worker type called ``name``.

    Raises:
        ConfigError: naming the known types.
    """
    try:
        return WORKER_TYPES[name]
    except KeyError:
        raise ConfigError("type", "flag", "one of " + ", ".join(WORKER_TYPES), name) from None


def default_task_types(name: str) -> tuple[str, ...]:
    """The task types a worker of type ``name`` runs when it registers without saying;
    none for a type not in the table (it must list its ``capabilities.task_types``)."""
    kind = WORKER_TYPES.get(name)
    return kind.task_types if kind else ()


def install_hint(provider: str) -> str:
    """The ``pip install`` line that brings ``provider``'s SDK."""
    extras = {kind.provider: kind.sdk_extra for kind in WORKER_TYPES.values() if kind.is_llm}
    return f"pip install '{DISTRIBUTION}[{extras.get(provider, provider)}]'"


def worker_type_for(task: NewTask, *, llm_worker_type: str) -> str:
    """The worker type ``elastic run`` starts for ``task``.

    A task that calls an LLM (an LLM task type, or ``mode: "llm"`` evolution) goes to
    ``llm_worker_type``; any other to the first non-LLM type that runs it.

    Raises:
        ConfigError: ``llm_worker_type`` cannot run the task (LLM-mode evolution on
            groq, say), naming the task and the LLM types that can.
    """
    if not needs_llm(task.type, task.data):
        return next(name for name, kind in WORKER_TYPES.items()
                    if not kind.is_llm and kind.runs(task.type, task.data))
    if get_worker_type(llm_worker_type).runs(task.type, task.data):
        return llm_worker_type
    able = [name for name in LLM_WORKER_TYPES if WORKER_TYPES[name].runs(task.type, task.data)]
    raise ConfigError("llm-type", "flag", f"a type whose workers run task {task.task_id!r} "
                      f"({task.type} in mode llm): {' or '.join(able)}", llm_worker_type)
