"""Every query on the jobs table. The only code that writes `status`.

Each transition is a compare-and-set: an UPDATE that matches the status it expects to leave
and, for a running job, the attempt that owns it (fencing). When no row matches, the job moved
on without us, and `StaleAttempt` is raised rather than anything being overwritten.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, String, bindparam, func, insert, select, text, tuple_, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.engine import Statements
from shared.db.models import Job, WebhookDelivery
from shared.errors import StaleAttempt
from shared.jobs.states import JobStatus, can_transition, is_terminal

Cursor = tuple[datetime, uuid.UUID]

JOBS_TABLE = Job.metadata.tables[Job.__tablename__]
JOB_COLUMNS = tuple(column.key for column in JOBS_TABLE.columns)
# A Core insert (no ORM bookkeeping), executed with one parameter set per job.
INSERT_JOBS = insert(JOBS_TABLE)

# The attempt's hot path as plain SQL, for autocommit sessions (see `_plain`): a
# claim, its progress and its end, each one statement sent as it is, past the ORM (which
# cost about 1 ms of Python a statement, three times the query's own 0.3 ms).
# The columns this code knows, named: a column added by a newer migration is not returned to
# older code (which could not build a Job from it, after the statement had committed).
RETURNING_JOB = ", ".join(JOB_COLUMNS)


def _claim_sql(job_id: str, now: str, lease_until: str) -> str:
    return f"""
UPDATE jobs SET status = 'running', seq = seq + 1, attempts = attempts + 1,
    started_at = {now}, finished_at = NULL, lease_expires_at = {lease_until}
WHERE id = {job_id} AND status = 'queued'
RETURNING {RETURNING_JOB}
"""


CLAIM_SQL = _claim_sql("$1", "$2", "$3")
# Without a webhook only: an end with one writes its delivery in the same transaction.
FINISH_SQL = f"""
UPDATE jobs SET status = $3, seq = seq + 1, finished_at = $4, result = $5::jsonb,
    error = $6::jsonb, lease_expires_at = NULL, progress = COALESCE($7::jsonb, progress)
WHERE id = $1 AND status = 'running' AND attempts = $2 AND webhook_url IS NULL
RETURNING {RETURNING_JOB}
"""
# A group's next job claimed by the statement that ends the one before it: rows tagged
# `claimed` (false: the end; true: the claim), either missing when its row did not match.
FINISH_AND_CLAIM_SQL = f"""
WITH finished AS ({FINISH_SQL}), claimed AS ({_claim_sql("$8", "$4", "$9")})
SELECT false AS claimed, * FROM finished UNION ALL SELECT true AS claimed, * FROM claimed
"""
PULSE_SQL = """
UPDATE jobs SET progress = COALESCE($3::jsonb, progress),
    seq = seq + CASE WHEN $3::jsonb IS NULL THEN 0 ELSE 1 END,
    lease_expires_at = COALESCE($4::timestamptz, lease_expires_at)
WHERE id = $1 AND status = 'running' AND attempts = $2
RETURNING cancel_requested, seq
"""


def _unnest_jobs(*extra: str) -> tuple[str, str, int]:
    """New jobs as rows, from one array per column (then one per name in `extra`, as TEXT):
    the FROM item (aliased b, with `ord`, each row's place), the jobs' columns as picked from
    it, and how many parameters it takes."""
    names = ", ".join([*JOB_COLUMNS, *extra])
    arrays, picked = [], []
    for number, column in enumerate(JOBS_TABLE.columns, start=1):
        # JSONB travels as JSON text, parsed by Postgres: None is JSON null, as `_json` says.
        # Strings travel as TEXT: an explicit cast to VARCHAR(n) would cut an over-long value
        # silently, where the insert's own assignment to the column refuses it.
        json = isinstance(column.type, JSONB)
        as_text = json or isinstance(column.type, String)
        element = "TEXT" if as_text else column.type.compile(dialect=postgresql.dialect())  # type: ignore[no-untyped-call]
        arrays.append(f"${number}::{element}[]")
        picked.append(f"b.{column.key}::JSONB" if json else f"b.{column.key}")
    arrays += [f"${len(arrays) + n}::TEXT[]" for n in range(1, len(extra) + 1)]
    rows = f"unnest({', '.join(arrays)}) WITH ORDINALITY AS b({names}, ord)"
    return rows, ", ".join(picked), len(arrays)


def _active(owner: str, cap: str) -> str:
    """An owner's active jobs (queued or running), counted on ix_jobs_owner_active up to cap."""
    return f"""(SELECT count(*) FROM (
                SELECT 1 FROM jobs
                WHERE jobs.owner = {owner} AND jobs.status IN ('queued', 'running')
                LIMIT {cap}) AS capped)"""


def _insert_jobs_sql(capped: bool) -> str:
    """New jobs in one statement (see `insert_capped`). With `capped`, only the jobs within
    their owner's cap of active jobs ($n+1) go in, in order, and the statement returns each
    owner's count before it."""
    rows, columns, count = _unnest_jobs()
    names = ", ".join(JOB_COLUMNS)
    if not capped:
        return f"INSERT INTO jobs ({names}) SELECT {columns} FROM {rows}"
    cap = f"${count + 1}::BIGINT"
    return f"""
WITH batch AS (
    SELECT b.*, row_number() OVER (PARTITION BY b.owner ORDER BY b.ord) AS nth FROM {rows}
), active AS (
    SELECT o.owner, {_active("o.owner", cap)} AS active
    FROM (SELECT DISTINCT owner FROM batch) AS o
), inserted AS (
    INSERT INTO jobs ({names})
    SELECT {columns} FROM batch AS b JOIN active AS a ON a.owner = b.owner
    WHERE a.active + b.nth <= {cap}
)
SELECT owner, active FROM active
"""


def _insert_claiming_sql(capped: bool) -> str:
    """New jobs and their Idempotency-Keys in one statement (see `insert_claiming`). The keys
    are locked in the order `IdempotencyKeys.claim_many` takes them, code point by code point
    (COLLATE "C", whatever the database's collation), so the two cannot deadlock."""
    rows, columns, count = _unnest_jobs("key", "request_hash")
    now, expired = f"${count + 1}::TIMESTAMPTZ", f"${count + 2}::TIMESTAMPTZ"
    fits = "SELECT true AS ok"
    if capped:
        cap = f"${count + 3}::BIGINT"
        fits = f"""SELECT coalesce(bool_and({_active("o.owner", cap)} + o.n <= {cap}), true) AS ok
    FROM (SELECT owner, count(*) AS n FROM batch GROUP BY owner) AS o"""
    return f"""
WITH batch AS (
    SELECT * FROM {rows}
), fits AS (
    {fits}
), claimed AS (
    INSERT INTO idempotency_keys AS k (owner, key, request_hash, job_id, created_at)
    SELECT b.owner, b.key, b.request_hash, b.id, {now} FROM batch AS b, fits
    WHERE fits.ok AND b.key IS NOT NULL
    ORDER BY b.owner COLLATE "C", b.key COLLATE "C"
    ON CONFLICT (owner, key) DO UPDATE
        SET request_hash = excluded.request_hash, job_id = excluded.job_id,
            created_at = excluded.created_at
        WHERE k.created_at < {expired}
    RETURNING k.owner, k.key, k.job_id
), inserted AS (
    INSERT INTO jobs ({", ".join(JOB_COLUMNS)})
    SELECT {columns} FROM batch AS b, fits
    WHERE fits.ok AND (b.key IS NULL OR EXISTS (
        SELECT 1 FROM claimed AS c
        WHERE c.owner = b.owner AND c.key = b.key AND c.job_id = b.id))
)
SELECT fits.ok, c.owner, c.key, c.job_id FROM fits LEFT JOIN claimed AS c ON true
"""


INSERT_JOBS_SQL = _insert_jobs_sql(capped=False)
INSERT_CAPPED_JOBS_SQL = _insert_jobs_sql(capped=True)
INSERT_CLAIMING_SQL = _insert_claiming_sql(capped=False)
INSERT_CLAIMING_CAPPED_SQL = _insert_claiming_sql(capped=True)
NOT_SINGLE = "not a single-statement session"


def _columns(jobs: Sequence[Job]) -> list[list[Any]]:
    """The jobs' values, one list per column, as `_unnest_jobs` takes them."""
    return [
        [_json(getattr(job, column.key)) for job in jobs]
        if isinstance(column.type, JSONB)
        else [getattr(job, column.key) for job in jobs]
        for column in JOBS_TABLE.columns
    ]


def _json(value: Any) -> str:
    """A JSONB parameter as the ORM writes it (None is JSON null, as the JSON type stores it)."""
    return json.dumps(value)


# Each owner's active jobs, up to :cap.
ACTIVE_COUNTS = text(
    f"SELECT o.owner, {_active('o.owner', ':cap')} FROM unnest(:owners) AS o(owner)"
).bindparams(bindparam("owners", type_=ARRAY(String)), bindparam("cap", type_=Integer))


@dataclass(frozen=True)
class Pulse:
    """What a running attempt learns from its periodic write."""

    cancel_requested: bool
    seq: int


class JobRepository:
    """Jobs in Postgres, in a session; or, made with `direct`, only the methods that are one
    plain statement (insert_capped, insert_claiming, claim, finish, finish_and_claim,
    save_progress with something to write), each on a pooled connection of its own, without a
    session. Errors then come as asyncpg's (see shared.db.engine.Statements)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session: AsyncSession | None = session
        self.statements: Statements | None = None

    @classmethod
    def direct(cls, statements: Statements) -> JobRepository:
        repository = cls.__new__(cls)
        repository._session, repository.statements = None, statements
        return repository

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("this repository runs single plain statements only")
        return self._session

    async def _plain(self, sql: str, *params: Any) -> Any:
        """In an autocommit session (`single_statements`) or `direct`, run `sql` as it is and
        return its row (None if none matched); the string NOT_SINGLE in a transaction, which
        the ORM must keep driving. Errors come as SQLAlchemy's in a session, mostly asyncpg's
        direct (see Statements); either way a dead connection is discarded."""
        if self.statements is not None:
            row = await self.statements.row(sql, *params)
            return None if row is None else dict(row)
        connection = await self.session.connection()
        options = connection.sync_engine.get_execution_options()
        if options.get("isolation_level") != "AUTOCOMMIT":
            return NOT_SINGLE
        result = await connection.exec_driver_sql(sql, params)
        return result.mappings().one_or_none()

    async def add(self, job: Job) -> Job:
        self.session.add(job)
        await self.session.flush()
        return job

    async def add_many(self, jobs: Sequence[Job]) -> None:
        """Insert new jobs in one statement; the objects stay out of the session."""
        if jobs:
            rows = [{name: getattr(job, name) for name in JOB_COLUMNS} for job in jobs]
            await self.session.execute(INSERT_JOBS, rows)

    async def insert_capped(self, jobs: Sequence[Job], cap: int | None) -> dict[str, int]:
        """In an autocommit session: insert new jobs in one statement, its own transaction.
        With a `cap`, each owner's jobs go in, in order, while the owner's active jobs (queued
        or running, counted up to `cap`) and its jobs before them in `jobs` stay within it;
        returns each owner's active count before the statement (empty without a cap)."""
        if not jobs:
            return {}
        arrays = _columns(jobs)
        if cap is None:
            await self._rows(INSERT_JOBS_SQL, *arrays)
            return {}
        rows = await self._rows(INSERT_CAPPED_JOBS_SQL, *arrays, cap)
        return {row["owner"]: int(row["active"]) for row in rows}

    async def insert_claiming(
        self,
        jobs: Sequence[Job],
        keys: Sequence[tuple[str, str] | None],
        now: datetime,
        expired_before: datetime,
        cap: int | None,
    ) -> set[tuple[str, str]] | None:
        """In an autocommit session: new jobs and their Idempotency-Keys (`keys[i]`: the key
        and request hash of `jobs[i]`, or None) in one statement, its own transaction. Each
        key is claimed as `IdempotencyKeys.claim_many` claims it, and a job with a key goes in
        only if it took its key. Returns the (owner, key) pairs taken; or, with a `cap`, None
        and nothing written if some owner's active jobs and all its jobs here could go over
        it (the caller then decides entry by entry)."""
        arrays = [
            *_columns(jobs),
            [None if pair is None else pair[0] for pair in keys],
            [None if pair is None else pair[1] for pair in keys],
        ]
        sql, params = INSERT_CLAIMING_SQL, [*arrays, now, expired_before]
        if cap is not None:
            sql, params = INSERT_CLAIMING_CAPPED_SQL, [*params, cap]
        rows = await self._rows(sql, *params)
        if not rows[0]["ok"]:
            return None
        ids = {job.id for job in jobs}
        return {
            (row["owner"], row["key"])
            for row in rows
            if row["key"] is not None and row["job_id"] in ids
        }

    async def _rows(self, sql: str, *params: Any) -> Sequence[Mapping[str, Any]]:
        """`sql` as it is, in an autocommit session or `direct`: its rows, as mappings."""
        if self.statements is not None:
            return await self.statements.rows(sql, *params)
        connection = await self._autocommit()
        result = await connection.exec_driver_sql(sql, params)
        return list(result.mappings())

    async def _autocommit(self) -> Any:
        connection = await self.session.connection()
        if connection.sync_engine.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            raise RuntimeError(NOT_SINGLE)
        return connection

    async def get_many(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Job]:
        if not job_ids:
            return {}
        found = await self.session.scalars(select(Job).where(Job.id.in_(job_ids)))
        return {job.id: job for job in found}

    async def get(self, job_id: uuid.UUID, *, owner: str | None = None) -> Job | None:
        query = select(Job).where(Job.id == job_id)
        if owner is not None:
            query = query.where(Job.owner == owner)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def page(
        self,
        *,
        owner: str | None,
        status: JobStatus | None = None,
        kind: str | None = None,
        limit: int = 20,
        after: Cursor | None = None,
    ) -> Sequence[Job]:
        """Newest first, keyset-paged on (created_at, id) so inserts never shift a page."""
        query = select(Job)
        if owner is not None:
            query = query.where(Job.owner == owner)
        if status is not None:
            query = query.where(Job.status == status.value)
        if kind is not None:
            query = query.where(Job.kind == kind)
        if after is not None:
            query = query.where(tuple_(Job.created_at, Job.id) < tuple_(*after))
        query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
        return (await self.session.execute(query)).scalars().all()

    async def _transition(
        self,
        job_id: uuid.UUID,
        expected: JobStatus,
        target: JobStatus,
        *,
        attempt: int | None = None,
        unless_cancelled: bool = False,
        **values: Any,
    ) -> Job:
        if not can_transition(expected, target):
            raise ValueError(f"illegal transition {expected} -> {target}")
        query = update(Job).where(Job.id == job_id, Job.status == expected.value)
        if attempt is not None:
            query = query.where(Job.attempts == attempt)
        if unless_cancelled:
            query = query.where(Job.cancel_requested.is_(False))
        query = (
            query.values(status=target.value, seq=Job.seq + 1, **values)
            .returning(Job)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        job = (await self.session.execute(query)).scalar_one_or_none()
        if job is None:
            raise StaleAttempt(f"job {job_id}: expected {expected} (attempt {attempt})")
        if is_terminal(target) and job.webhook_url:
            # In the same transaction as the end itself: the notification cannot be lost.
            now = datetime.now(UTC)
            self.session.add(
                WebhookDelivery(
                    id=uuid.uuid4(),
                    job_id=job.id,
                    url=job.webhook_url,
                    state="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
            await self.session.flush()
        return job

    async def claim(self, job_id: uuid.UUID, now: datetime, lease_until: datetime) -> Job:
        """queued -> running as a new attempt, holding a lease. Of racing claimers one wins."""
        row = await self._plain(CLAIM_SQL, job_id, now, lease_until)
        if row is None:
            raise StaleAttempt(f"job {job_id}: expected queued")
        if row is not NOT_SINGLE:
            return Job(**row)
        return await self._transition(
            job_id,
            JobStatus.QUEUED,
            JobStatus.RUNNING,
            attempts=Job.attempts + 1,
            started_at=now,
            finished_at=None,
            lease_expires_at=lease_until,
        )

    async def finish(
        self,
        job_id: uuid.UUID,
        attempt: int,
        target: JobStatus,
        now: datetime,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        progress: dict[str, Any] | None = None,
    ) -> Job:
        values: dict[str, Any] = {
            "finished_at": now,
            "result": result,
            "error": error,
            "lease_expires_at": None,
        }
        if progress is not None:
            values["progress"] = progress
        if not can_transition(JobStatus.RUNNING, target):
            raise ValueError(f"illegal transition running -> {target}")
        row = await self._plain(
            FINISH_SQL,
            job_id,
            attempt,
            target.value,
            now,
            _json(result),
            _json(error),
            None if progress is None else _json(progress),
        )
        if row is None:
            raise StaleAttempt(
                f"job {job_id}: expected running (attempt {attempt}) without a webhook"
            )
        if row is not NOT_SINGLE:
            return Job(**row)
        return await self._transition(job_id, JobStatus.RUNNING, target, attempt=attempt, **values)

    async def finish_and_claim(
        self,
        job_id: uuid.UUID,
        attempt: int,
        target: JobStatus,
        now: datetime,
        *,
        result: dict[str, Any] | None,
        error: dict[str, Any] | None,
        progress: dict[str, Any] | None,
        next_id: uuid.UUID,
        lease_until: datetime,
    ) -> tuple[Job | None, Job | None]:
        """In an autocommit session, one statement: `finish` (for a job without a webhook)
        and `claim` of `next_id`, leased from `now`. Returns the ended and the claimed job,
        each None where its row had moved on (the other still happens)."""
        if not can_transition(JobStatus.RUNNING, target):
            raise ValueError(f"illegal transition running -> {target}")
        encoded = None if progress is None else _json(progress)
        ended = (job_id, attempt, target.value, now, _json(result), _json(error), encoded)
        params = (*ended, next_id, lease_until)
        found: dict[bool, Job] = {}
        for row in await self._rows(FINISH_AND_CLAIM_SQL, *params):
            values = dict(row)
            claim = values.pop("claimed")
            found[claim] = Job(**values)
        return found.get(False), found.get(True)

    async def requeue(
        self,
        job_id: uuid.UUID,
        attempt: int,
        *,
        run_at: datetime,
        error: dict[str, Any],
        progress: dict[str, Any] | None = None,
    ) -> Job:
        """running -> queued for another attempt at `run_at`; the dispatcher sends it then.

        A job whose cancel was requested is not re-queued: it ends cancelled instead.
        """
        values: dict[str, Any] = {"lease_expires_at": None}
        if progress is not None:
            values["progress"] = progress
        try:
            return await self._transition(
                job_id,
                JobStatus.RUNNING,
                JobStatus.QUEUED,
                attempt=attempt,
                unless_cancelled=True,
                run_at=run_at,
                error=error,
                dispatched_at=None,
                **values,
            )
        except StaleAttempt:
            cancelled = {"type": "cancelled", "message": "cancelled while running"}
            return await self._transition(
                job_id,
                JobStatus.RUNNING,
                JobStatus.CANCELLED,
                attempt=attempt,
                # It ends now, not at the back-off time it would have been retried at.
                finished_at=datetime.now(UTC),
                error=cancelled,
                **values,
            )

    async def cancel_queued(self, job_id: uuid.UUID, now: datetime) -> Job:
        return await self._transition(
            job_id,
            JobStatus.QUEUED,
            JobStatus.CANCELLED,
            finished_at=now,
            cancel_requested=True,
            error={"type": "cancelled", "message": "cancelled before it started"},
        )

    async def request_cancel(self, job_id: uuid.UUID) -> Job | None:
        """Flag a running job; its attempt sees the flag and stops. None if it is not running."""
        query = (
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING.value)
            .values(cancel_requested=True)
            .returning(Job)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def save_progress(
        self,
        job_id: uuid.UUID,
        attempt: int,
        progress: dict[str, Any] | None,
        lease_until: datetime | None = None,
    ) -> Pulse | None:
        """Store progress and renew the lease (each when given); read the cancel flag.

        Returns None when the attempt no longer owns the job.
        """
        if progress is not None or lease_until is not None:
            encoded = None if progress is None else _json(progress)
            row = await self._plain(PULSE_SQL, job_id, attempt, encoded, lease_until)
            if row is not NOT_SINGLE:
                return None if row is None else Pulse(row["cancel_requested"], row["seq"])
        fenced = (
            Job.id == job_id,
            Job.status == JobStatus.RUNNING.value,
            Job.attempts == attempt,
        )
        values: dict[str, Any] = {}
        if progress is not None:
            values.update(progress=progress, seq=Job.seq + 1)
        if lease_until is not None:
            values["lease_expires_at"] = lease_until
        if not values:
            query: Any = select(Job.cancel_requested, Job.seq).where(*fenced)
        else:
            query = (
                update(Job)
                .where(*fenced)
                .values(**values)
                .returning(Job.cancel_requested, Job.seq)
                .execution_options(synchronize_session=False)
            )
        row = (await self.session.execute(query)).one_or_none()
        return None if row is None else Pulse(cancel_requested=row[0], seq=row[1])

    async def count_active(self, owner: str) -> int:
        """How many of `owner`'s jobs are queued or running."""
        query = select(func.count()).where(
            Job.owner == owner,
            Job.status.in_((JobStatus.QUEUED.value, JobStatus.RUNNING.value)),
        )
        return int(await self.session.scalar(query) or 0)

    async def active_counts(self, owners: Sequence[str], cap: int) -> dict[str, int]:
        """How many of each owner's jobs are queued or running, counting no further than `cap`
        (a subject with a long queue costs no more than one at its limit)."""
        if not owners:
            return {}
        rows = await self.session.execute(ACTIVE_COUNTS, {"owners": list(owners), "cap": cap})
        return {owner: int(count) for owner, count in rows}

    async def count_by_status(self, owner: str | None) -> dict[str, int]:
        """Jobs by status: `owner`'s, or everyone's when owner is None."""
        query = select(Job.status, func.count()).group_by(Job.status)
        if owner is not None:
            query = query.where(Job.owner == owner)
        return {status: count for status, count in await self.session.execute(query)}

    async def ping(self) -> None:
        await self.session.execute(text("SELECT 1"))
