"""The `jobq` command: the dev runner, the process entry points, and an HTTP client."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from cli.client import DEFAULT_URL, EXIT_CLIENT_ERROR, ClientError, JobqClient
from cli.display import job_json, job_table, outcome, watch
from cli.params import parse_params
from cli.processes import Argv, api_argv, flower_argv, flower_env, worker_argv, worker_env
from shared.errors import ConfigurationError
from shared.jobs.states import JobStatus, Priority
from shared.settings import Settings, load_settings
from shared.tokens import DEFAULT_TTL, issue_token

app = typer.Typer(
    name="jobq",
    help="jobq: submit jobs over HTTP, run them on Celery, keep them in Postgres.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

Url = Annotated[str, typer.Option("--url", envvar="JOBQ_URL", help="The API's base URL.")]
Token = Annotated[
    str, typer.Option("--token", envvar="JOBQ_TOKEN", show_default=False, help="A bearer token.")
]
JobId = Annotated[str, typer.Argument(help="The job's id.")]


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        _fail(str(exc), 2)


def _fail(message: str, code: int) -> NoReturn:
    errors.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def _exec(argv: Argv, env: dict[str, str] | None = None) -> NoReturn:
    sys.stdout.flush()
    os.execvpe(argv[0], argv, {**os.environ, **(env or {})})


# Processes


@app.command()
def dev() -> None:
    """Run the whole stack (API, worker, Flower, and embedded Postgres/Redis if unset)."""
    from cli.dev import run_dev  # heavy imports (alembic, pgserver) only for this command

    raise typer.Exit(run_dev(_settings(), console))


@app.command()
def api() -> None:
    """Run the API server (uvicorn) in this process."""
    _exec(api_argv(_settings()))


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Pool size (default JOBQ_WORKER_CONCURRENCY).")
    ] = None,
) -> None:
    """Run a Celery worker on every jobq queue in this process."""
    _exec(worker_argv(_settings(), concurrency), worker_env())


@app.command()
def flower() -> None:
    """Run Flower, Celery's monitor, in this process."""
    settings = _settings()
    try:
        env = flower_env(settings)
    except ConfigurationError as exc:
        _fail(str(exc), 2)
    _exec(flower_argv(settings), env)


@app.command()
def migrate() -> None:
    """Upgrade the database to the latest migration."""
    from shared.db.migrate import upgrade

    upgrade(_settings().database_url)
    console.print("database is at the latest migration")


@app.command()
def token(
    subject: Annotated[str, typer.Argument(help="The `sub` claim: who owns the jobs.")],
    admin: Annotated[bool, typer.Option("--admin", help="May see every job.")] = False,
    ttl: Annotated[int, typer.Option(min=1, help="Seconds until it expires.")] = DEFAULT_TTL,
) -> None:
    """Print a bearer token signed with JOBQ_SECRET_KEY."""
    print(issue_token(_settings(), subject, admin=admin, ttl=ttl))


# Client


@contextlib.contextmanager
def _client(url: str, token: str) -> Iterator[JobqClient]:
    """A client whose failures end the command with the server's detail and an exit code."""
    try:
        with JobqClient(url, token) as client:
            yield client
    except ClientError as exc:
        _fail(exc.message, exc.exit_code)


def _follow(client: JobqClient, job_id: str) -> None:
    job = watch(client.follow(job_id), console)
    outcome(job, console)
    raise typer.Exit(0 if job.status is JobStatus.SUCCEEDED else 1)


@app.command()
def submit(
    kind: Annotated[str, typer.Argument(help="A kind listed by GET /kinds.")],
    params: Annotated[
        list[str] | None, typer.Argument(help="key=value; values parse as JSON when they can.")
    ] = None,
    priority: Annotated[Priority, typer.Option(help="Queue priority.")] = Priority.NORMAL,
    delay: Annotated[
        float | None, typer.Option(min=0, help="Run no sooner than this many seconds.")
    ] = None,
    watch_: Annotated[bool, typer.Option("--watch", help="Follow it with a progress bar.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Submit a job and print its id."""
    try:
        body: dict[str, Any] = {"kind": kind, "params": parse_params(params or [])}
    except ValueError as exc:
        _fail(str(exc), EXIT_CLIENT_ERROR)
    if priority is not Priority.NORMAL:
        body["priority"] = priority.value
    if delay is not None:
        body["delay_seconds"] = delay
    with _client(url, token) as client:
        job = client.submit(body)
        if as_json:
            console.print_json(job_json(job))
        else:
            print(job.id)
        if watch_:
            _follow(client, str(job.id))


@app.command()
def status(job_id: JobId, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Print a job as JSON."""
    with _client(url, token) as client:
        console.print_json(job_json(client.get(job_id)))


@app.command(name="list")
def list_jobs(
    status: Annotated[JobStatus | None, typer.Option(help="Only jobs in this status.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only jobs of this kind.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="At most this many.")] = 20,
    cursor: Annotated[str | None, typer.Option(help="Next page, as printed.")] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """List your jobs, newest first."""
    with _client(url, token) as client:
        page = client.list_jobs(
            status=status.value if status else None, kind=kind, limit=limit, cursor=cursor
        )
    if not page.items:
        console.print("no jobs")
        return
    console.print(job_table(page))
    if page.next_cursor:
        console.print(
            f"more: jobq list --cursor {page.next_cursor}", highlight=False, soft_wrap=True
        )


@app.command()
def cancel(job_id: JobId, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Cancel a job: at once if queued, within seconds if running."""
    with _client(url, token) as client:
        job = client.cancel(job_id)
    state = "cancel requested" if job.status is JobStatus.RUNNING else job.status.value
    console.print(f"{job.id}: {state}", highlight=False)


@app.command()
def retry(
    job_id: JobId,
    watch: Annotated[bool, typer.Option(help="Follow the new job until it ends.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Run a finished job again: same kind and params, as a new job."""
    with _client(url, token) as client:
        job = client.retry(job_id)
        console.print(f"{job.id}: {job.status.value} (retry of {job_id})", highlight=False)
        if watch:
            _follow(client, str(job.id))


@app.command(name="watch")
def watch_job(job_id: JobId, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Follow a job's progress until it finishes; exit 0 only if it succeeded."""
    with _client(url, token) as client:
        _follow(client, job_id)
