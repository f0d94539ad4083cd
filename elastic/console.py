"""Rich rendering for the command line: status tables, batch summaries, progress bars."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from elastic import seed004
from elastic.batch import MAX_RETRY_SECONDS, BatchState
from elastic.tasks import SubmitOutcome, Task, TaskStatus

STATUS_STYLES = {"completed": "green", "failed": "red", "cancelled": "yellow",
                 "assigned": "cyan", "pending": "white", "redistributed": "magenta",
                 "held": "bold magenta",
                 "online": "green", "busy": "cyan", "dead": "red", "offline": "dim"}


def styled(word: str) -> str:
    """A status word in its colour."""
    style = STATUS_STYLES.get(word, "white")
    return f"[{style}]{word}[/{style}]"


def batch_progress() -> Progress:
    """The progress bar used by ``run`` and ``submit --wait``."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[detail]}"), TimeElapsedColumn())


def first_few(items: Sequence[str], shown: int = 5) -> str:
    """``a, b, c`` or ``a, b, c, d, e and 7 more``."""
    listed = ", ".join(items[:shown])
    return listed if len(items) <= shown else f"{listed} and {len(items) - shown} more"


def submitted_line(outcomes: Sequence[SubmitOutcome]) -> str:
    """``submitted 2 task(s) (a, b), 1 already known (c)``."""
    created = [outcome.task_id for outcome in outcomes if outcome.created]
    known = [outcome.task_id for outcome in outcomes if not outcome.created]
    return (f"submitted {len(created)} task(s)" + (f" ({first_few(created)})" if created else "")
            + f", {len(known)} already known" + (f" ({first_few(known)})" if known else ""))


def changed_content_lines(outcomes: Sequence[SubmitOutcome], *, replace: bool) -> list[str]:
    """What became of the known task ids whose content changed (``submit``, ``run``)."""
    replaced = [outcome.task_id for outcome in outcomes if outcome.replaced]
    kept = [outcome.task_id for outcome in outcomes if outcome.changed and not outcome.replaced]
    lines = []
    if replaced:
        lines.append(f"{len(replaced)} task(s) requeued with their new content (history "
                     f"kept): {first_few(replaced)}")
    if kept and replace:
        lines.append(f"{len(kept)} task(s) already known with different content were left as "
                     f"they are, running or completed (a completed task keeps its result: "
                     f"give the new content a new task_id): {first_few(kept)}")
    elif kept:
        lines.append(f"{len(kept)} task(s) already known with different content: "
                     f"{first_few(kept)} (their earlier runs stand; --replace requeues them "
                     "with the new content)")
    return lines


def count_words(statuses: Iterable[str]) -> str:
    """``3 completed, 1 failed`` for the progress bar's detail column."""
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return ", ".join(f"{n} {styled(word)}" for word, n in sorted(counts.items()))


def held_line(task_id: str, reason: str | None, error: str | None) -> str:
    """One line saying a task is held, why, and how to let it run again."""
    return (f"{task_id} held ({reason}): {error or 'no error recorded'}; fix the cause, "
            f"then `elastic release {task_id}` to run it again")


class BatchWaitView:
    """``elastic submit --wait``'s display of a followed batch (an ``on_round`` callback):
    the progress bar with the status counts and the tasks no worker can run yet, and a
    line on ``messages`` when the orchestrator goes away and when it is back."""

    def __init__(self, progress: Progress, bar: TaskID, messages: Console) -> None:
        self.progress, self.bar, self.messages = progress, bar, messages
        self.was_unreachable = False

    def __call__(self, state: BatchState) -> None:
        """Show ``state``."""
        if state.unreachable and not self.was_unreachable:
            self.messages.print(f"{escape(state.unreachable)}; retrying (every "
                                f"{MAX_RETRY_SECONDS:.0f} s at most) until it is back; Ctrl-C "
                                "stops waiting, the tasks stay queued", highlight=False)
        elif self.was_unreachable and not state.unreachable:
            self.messages.print("the orchestrator answers again", highlight=False)
        self.was_unreachable = state.unreachable is not None
        detail = count_words(state.statuses.values())
        if state.unservable:
            detail += f", [yellow]{len(state.unservable)} no worker can run yet[/yellow]"
        self.progress.update(self.bar, completed=len(state.ended), detail=detail)


def summary_table(tasks: Sequence[Task]) -> Table:
    """One row per task of a batch: status, algorithm, worker, time and the key figures."""
    table = Table(title="batch summary")
    table.add_column("task", no_wrap=True)
    for column in ("type", "status", "worker", "attempts", "time (s)", "outcome"):
        table.add_column(column)
    for task in tasks:
        elapsed = task.execution_time_s
        table.add_row(task.task_id, _type_label(task), styled(task.status.value),
                      task.worker_id or "-", str(task.attempts),
                      f"{elapsed:.2f}" if elapsed is not None else "-", _outcome(task))
    return table


def _type_label(task: Task) -> str:
    ran = (task.result or {}).get("algorithm") or task.data.get("algorithm")
    return f"{task.type} ({ran})" if ran else task.type


def _outcome(task: Task) -> str:
    result = task.result or {}
    if task.status is TaskStatus.HELD:
        return f"[magenta]{task.held_reason}: {task.error or ''}[/magenta]"
    if task.status is not TaskStatus.COMPLETED:
        return f"[red]{task.error or ''}[/red]"
    if "total_energy" in result:
        return f"E={result['total_energy']:.6g} drift={result.get('energy_drift', 0):.2e}"
    if "genome" in result:
        return f"genome with {len(result['genome'])} genes"
    output = str(result.get("output", ""))
    return output[:60] + ("…" if len(output) > 60 else "")


def status_view(stats: Mapping[str, Any], workers: Sequence[Mapping[str, Any]],
                recent_failures: Sequence[Mapping[str, Any]], *,
                fleet: Sequence[Mapping[str, Any]] = ()) -> Group:
    """The ``elastic status`` screen: workers, the declared workers that are missing (when
    some are), tasks by state, the work no online worker can run (when there is some),
    recent failures."""
    parts = [_workers_table(workers)]
    missing = [entry for entry in fleet if entry["missing"]]
    if missing:
        parts.append(_missing_table(missing))
    parts.append(_tasks_table(stats["tasks"]))
    if stats.get("unservable"):
        parts.append(_unservable_table(stats["unservable"]))
    return Group(*parts, _failures_table(recent_failures))


def _missing_table(missing: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="declared workers missing")
    table.add_column("worker", no_wrap=True)
    table.add_column("address")
    table.add_column("why", style="red")
    for entry in missing:
        table.add_row(escape(entry["worker_id"]), escape(entry["address"]),
                      escape(entry["problem"] or ""))
    return table


def _unservable_table(groups: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="waiting for a worker that can run them")
    table.add_column("tasks and why", style="yellow")
    for group in groups:
        table.add_row(escape(f"{group['count']} task(s): {group['reason']}"))
    return table


def _workers_table(workers: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="workers")
    table.add_column("worker", no_wrap=True)
    for column in ("type", "status", "running", "completed", "failed",
                   "success rate", "last heartbeat", "provider"):
        table.add_column(column)
    for worker in workers:
        rate = worker.get("success_rate")
        provider = (worker.get("info") or {}).get("provider")
        table.add_row(worker["worker_id"], worker["worker_type"], styled(worker["status"]),
                      f"{worker['active_tasks']}/{worker['capacity']}",
                      str(worker["tasks_completed"]), str(worker["tasks_failed"]),
                      "-" if rate is None else f"{rate:.0%}", _age(worker.get("last_heartbeat")),
                      _provider_cell(provider))
    return table


def _age(timestamp: str | None) -> str:
    """``12 s ago`` for an ISO time."""
    if not timestamp:
        return "-"
    seconds = (datetime.now(UTC) - datetime.fromisoformat(timestamp)).total_seconds()
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


def _provider_cell(provider: Mapping[str, Any] | None) -> str:
    if not provider:
        return "-"
    shown = ", ".join(f"{key}={value}" for key, value in provider.items()
                      if value is not None and key != "breaker")
    down = _backend_down(provider)
    return f"[red]{escape(down)}[/red]; {shown}" if down else shown


def _backend_down(provider: Mapping[str, Any]) -> str | None:
    """``ollama down since 14:03:07: <error>`` while the worker's breaker is open, else None."""
    breaker = provider.get("breaker") or {}
    if breaker.get("state", "closed") == "closed":
        return None
    since = breaker.get("since")
    local = datetime.fromisoformat(since).astimezone().strftime("%H:%M:%S") if since else "?"
    return f"{provider.get('provider', 'the LLM backend')} down since {local}: {breaker.get('error')}"


def _tasks_table(counts: Mapping[str, int]) -> Table:
    table = Table(title="tasks by state")
    words = ["pending", "redistributed", "assigned", "held", "completed", "failed", "cancelled",
             "total"]
    for word in words:
        table.add_column(word, justify="right")
    shown = seed004.tasks_summary(counts)
    table.add_row(*(str(shown.get(word, 0)) for word in words))
    return table


def _failures_table(failures: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="recent failures and held tasks (elastic release ID)")
    for column in ("task", "type", "status", "attempts", "finished", "error"):
        table.add_column(column)
    for task in failures:
        reason = f"{task['held_reason']}: " if task.get("held_reason") else ""
        table.add_row(task["task_id"], task["type"], styled(task["status"]),
                      str(task["attempts"]), task.get("finished_at") or "-",
                      f"[red]{reason}{task.get('error') or ''}[/red]")
    return table
