"""How the client commands draw jobs: a table, JSON, and a live progress bar.

Nothing here fetches; the watch bar draws whatever sequence of job states it is given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.jobs.schemas import JobOut, JobPage
from shared.jobs.states import JobStatus

STATUS_STYLES = {
    JobStatus.QUEUED: "yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "magenta",
}


def job_json(job: JobOut) -> str:
    return json.dumps(job.model_dump(mode="json"), indent=2)


def job_table(page: JobPage) -> Table:
    # Owner only when it tells something: an admin seeing several subjects' jobs.
    owners = len({job.owner for job in page.items}) > 1
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("id", no_wrap=True, min_width=36)  # copied, so never shortened
    table.add_column("kind", overflow="ellipsis", min_width=5)
    table.add_column("status", no_wrap=True, min_width=9)
    table.add_column("done", no_wrap=True, justify="right")
    table.add_column("tries", no_wrap=True)
    if owners:
        table.add_column("owner", overflow="ellipsis", min_width=5)
    table.add_column("created", no_wrap=True, min_width=11)
    for job in page.items:
        cells = [
            str(job.id),
            escape(job.kind),
            _status(job.status),
            _percent(job),
            f"{job.attempts}/{job.max_attempts}",
            *([escape(job.owner)] if owners else []),
            _when(job.created_at),
        ]
        table.add_row(*cells)
    return table


def watch(jobs: Iterable[JobOut], console: Console) -> JobOut:
    """Draws a progress bar from each state in `jobs`; returns the last one."""
    last: JobOut | None = None
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("", total=100.0, note="")
        for job in jobs:
            last = job
            percent, note = _progress_of(job)
            bar.update(
                task,
                description=f"{escape(job.kind)} {_status(job.status)}",
                completed=percent if percent is not None else 0.0,
                note=escape(note),
            )
    if last is None:
        raise ValueError("no job state to show")
    return last


def outcome(job: JobOut, console: Console) -> None:
    """The result of a finished job, or its error."""
    if job.status is JobStatus.SUCCEEDED:
        console.print_json(json.dumps(job.result))
    elif job.error is not None:
        console.print(
            f"[red]{job.status.value}[/] ({job.error.type.value}): {escape(job.error.message)}"
        )
    else:
        console.print(f"[red]{job.status.value}[/]")


def _progress_of(job: JobOut) -> tuple[float | None, str]:
    message = (job.progress.message or "") if job.progress else ""
    if job.status is JobStatus.SUCCEEDED:
        return 100.0, message
    return (job.progress.percent if job.progress else None), message


def _status(status: JobStatus) -> str:
    return f"[{STATUS_STYLES[status]}]{status.value}[/]"


def _percent(job: JobOut) -> str:
    if job.status is JobStatus.SUCCEEDED:
        return "100%"
    if job.progress is None or job.progress.percent is None:
        return ""
    return f"{job.progress.percent:.0f}%"


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%m-%d %H:%M")
