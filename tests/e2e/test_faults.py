"""Nothing lost: processes killed mid-run, crashes between commit and dispatch.

Each scenario runs on a stack of its own (its own Redis, API and worker processes) with short
leases, is bounded in time, and ends with the invariant check of tests/e2e/stack.py. The
scenarios about workers run on each broker: with RabbitMQ, a dead worker's unacknowledged
messages come back at once, while the job's lease has not yet run out.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.metrics import queue_depths
from cli.servers import EmbeddedPostgres, EmbeddedRedis
from shared.broker import create_celery
from shared.db.engine import SessionFactory, create_engine, create_session_factory
from shared.db.migrate import upgrade
from shared.settings import Settings
from tests.conftest import Servers, on_each_broker
from tests.e2e.processes import Managed
from tests.e2e.stack import (
    Stack,
    all_terminal,
    check_invariants,
    install_transition_log,
    statuses,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture
async def sessions(settings: Settings, own_database: str) -> AsyncIterator[SessionFactory]:
    """Each scenario runs on a database of its own, out of reach of every other test's
    dispatchers and workers (this overrides the suite's shared one in this module)."""
    engine = create_engine(settings.model_copy(update={"database_url": own_database}))
    yield create_session_factory(engine)
    await engine.dispose()


@pytest.fixture
async def stack(
    settings: Settings,
    servers: Servers,
    sessions: SessionFactory,
    own_database: str,
    own_broker_url: str | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    await install_transition_log(sessions)
    redis = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False)
    redis_url = await asyncio.to_thread(redis.start)
    fast = settings.model_copy(
        update={
            "redis_url": redis_url,
            "broker_url": own_broker_url,
            "database_url": own_database,
            "lease_seconds": 3.0,
            "claim_timeout": 2.0,
        }
    )
    built = Stack(fast, servers.tmp / "logs", redis=redis)
    try:
        yield built
    finally:
        await asyncio.to_thread(built.stop)


@on_each_broker
async def test_worker_child_then_whole_worker_killed_mid_job(
    stack: Stack, sessions: SessionFactory
) -> None:
    await asyncio.to_thread(stack.start_api)
    worker = await asyncio.to_thread(stack.start_worker)
    ids = [
        await submit(stack.api_url(), stack.headers, "sleep", {"seconds": 3, "steps": 30})
        for _ in range(6)
    ]
    running = await wait_until(
        sessions, ids, lambda found: sum(s == "running" for s, _ in found.values()) >= 2, 30
    )
    children = stack.pool_children(worker)
    assert children, "the worker has no pool processes"
    children[0].kill()

    await asyncio.sleep(1.5)
    running = await statuses(sessions, ids)
    killed_with_worker = {job_id for job_id, (status, _) in running.items() if status == "running"}
    stack.kill(worker)
    await asyncio.to_thread(stack.start_worker)

    found = await wait_until(sessions, ids, all_terminal, 150)
    assert {status for status, _ in found.values()} == {"succeeded"}, found
    assert sum(attempts >= 2 for _, attempts in found.values()) >= 2, found
    assert all(found[job_id][1] >= 2 for job_id in killed_with_worker), found
    await check_invariants(sessions, ids)


@on_each_broker
async def test_a_worker_killed_holding_prefetched_messages_loses_none(
    stack: Stack, sessions: SessionFactory
) -> None:
    """With JOBQ_WORKER_PREFETCH=4 a worker takes jobs off the broker ahead of running them;
    killed, those come back (their messages were never acknowledged) or are sent again."""
    await asyncio.to_thread(stack.start_api)
    plain = stack.settings
    stack.settings = plain.model_copy(update={"worker_prefetch": 4})
    try:
        worker = await asyncio.to_thread(stack.start_worker)
    finally:
        stack.settings = plain
    ids = [
        await submit(stack.api_url(), stack.headers, "sleep", {"seconds": 2, "steps": 20})
        for _ in range(8)
    ]
    await wait_until(
        sessions, ids, lambda found: sum(s == "running" for s, _ in found.values()) >= 2, 30
    )
    celery = create_celery(stack.settings)
    try:
        # Held by the worker, not waiting in the broker: two running, six reserved.
        for _ in range(50):
            if sum((await asyncio.to_thread(queue_depths, celery)).values()) == 0:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the worker did not take the waiting jobs off the broker")
        found = await statuses(sessions, ids)
        assert sum(status == "queued" for status, _ in found.values()) >= 4, found
    finally:
        celery.close()
    stack.kill(worker)
    await asyncio.to_thread(stack.start_worker)

    found = await wait_until(sessions, ids, all_terminal, 150)
    assert {status for status, _ in found.values()} == {"succeeded"}, found
    await check_invariants(sessions, ids)


async def test_api_killed_with_quick_jobs_in_flight(stack: Stack, sessions: SessionFactory) -> None:
    api = await asyncio.to_thread(stack.start_api)
    await asyncio.to_thread(stack.start_worker)
    ids = [await submit(stack.api_url(), stack.headers, "nap", {"seconds": 3}) for _ in range(5)]
    await wait_until(
        sessions, ids, lambda found: all(s == "running" for s, _ in found.values()), 10
    )
    stack.kill(api)
    await asyncio.to_thread(stack.start_api)

    found = await wait_until(sessions, ids, all_terminal, 60)
    assert {status for status, _ in found.values()} == {"succeeded"}, found
    assert all(attempts == 2 for _, attempts in found.values()), found
    await check_invariants(sessions, ids)


async def test_crash_between_commit_and_dispatch_still_runs_the_job(
    stack: Stack, sessions: SessionFactory
) -> None:
    crashing = stack.settings.model_copy(update={"failpoints": ["after-commit"]})
    await asyncio.to_thread(stack.start_api, crashing)
    await asyncio.to_thread(stack.start_worker)
    for kind, params in (("sleep", {"seconds": 0.2, "steps": 2}), ("echo", {"message": "x"})):
        with pytest.raises(httpx.TransportError):
            await submit(stack.api_url(), stack.headers, kind, params)
        stack.apis.pop().stop()
        if kind == "sleep":
            await asyncio.to_thread(stack.start_api, crashing)
    # The rows were committed; no message was ever sent, and no 202 either.
    await asyncio.to_thread(stack.start_api)
    async with httpx.AsyncClient(base_url=stack.api_url(), headers=stack.headers) as client:
        listed = (await client.get("/jobs")).json()["items"]
    ids = [item["id"] for item in listed]
    assert sorted(item["kind"] for item in listed) == ["echo", "sleep"]
    found = await wait_until(sessions, ids, all_terminal, 30)
    assert {status for status, _ in found.values()} == {"succeeded"}, found
    await check_invariants(sessions, ids)


async def _burst(
    url: str,
    headers: dict[str, str],
    count: int,
    codes: Counter[int],
    ids: list[str],
    pause: float = 0,
) -> None:
    """Submit `count` short heavy jobs, 8 at a time, recording every answer."""
    gate = asyncio.Semaphore(8)
    body = {"kind": "sleep", "params": {"seconds": 0, "steps": 1}}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:

        async def one() -> None:
            async with gate:
                try:
                    response = await client.post("/jobs", json=body)
                except httpx.TransportError:
                    codes[0] += 1
                    return
                codes[response.status_code] += 1
                if response.status_code == 202:
                    ids.append(response.json()["id"])
                if pause:
                    await asyncio.sleep(pause)

        await asyncio.gather(*(one() for _ in range(count)))


async def test_redis_killed_and_restarted_empty_during_a_burst(
    stack: Stack, sessions: SessionFactory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    await asyncio.to_thread(stack.start_api)
    await asyncio.to_thread(stack.start_worker)
    codes: Counter[int] = Counter()
    ids: list[str] = []
    # Paced so the burst spans the outage: about 400 submissions a second.
    burst = asyncio.create_task(
        _burst(stack.api_url(), stack.headers, 1000, codes, ids, pause=0.02)
    )
    await asyncio.sleep(0.5)
    assert stack.redis is not None and stack.redis.port is not None
    port = stack.redis.port
    await asyncio.to_thread(stack.redis.kill)
    accepted_before = codes[202]
    await asyncio.sleep(1)
    stack.redis = EmbeddedRedis(tmp_path_factory.mktemp("redis-again"), port=port, persist=False)
    await asyncio.to_thread(stack.redis.start)
    accepted_during = codes[202] - accepted_before
    await burst

    assert codes[500] == 0 and set(codes) <= {202, 503}, codes
    assert len(ids) == codes[202], codes
    assert codes[202] > accepted_before + accepted_during, "nothing was accepted after the restart"
    found = await wait_until(sessions, ids, all_terminal, 180)
    assert {status for status, _ in found.values()} == {"succeeded"}, Counter(
        status for status, _ in found.values()
    )
    await check_invariants(sessions, ids)


@pytest.fixture
async def own_postgres(
    servers: Servers, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[EmbeddedPostgres, str]]:
    """A Postgres of this test's own, so it can be stopped and started again."""
    postgres = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="jq-pg-")))
    await asyncio.to_thread(postgres.start)
    url = await asyncio.to_thread(postgres.create_database, "faults")
    await asyncio.to_thread(upgrade, url)
    try:
        yield postgres, url
    finally:
        await asyncio.to_thread(postgres.stop)
        shutil.rmtree(postgres.data_dir, ignore_errors=True)


async def test_postgres_stopped_for_five_seconds_under_load(
    stack: Stack, own_postgres: tuple[EmbeddedPostgres, str]
) -> None:
    postgres, url = own_postgres
    stack.settings = stack.settings.model_copy(update={"database_url": url, "lease_seconds": 10.0})
    # The test's own reads go on through the restart: its pool pings what it hands out.
    engine = create_engine(stack.settings.model_copy(update={"database_pre_ping": True}))
    sessions = create_session_factory(engine)
    try:
        await install_transition_log(sessions)
        await asyncio.to_thread(stack.start_api)
        await asyncio.to_thread(stack.start_worker)
        codes: Counter[int] = Counter()
        ids: list[str] = []
        burst = asyncio.create_task(
            _burst(stack.api_url(), stack.headers, 300, codes, ids, pause=0.2)
        )
        await asyncio.sleep(2)
        await asyncio.to_thread(postgres.pause)
        await asyncio.sleep(5)
        await asyncio.to_thread(postgres.resume)
        await burst

        assert codes[500] == 0 and set(codes) <= {202, 503}, codes
        assert codes[503] > 0 and codes[202] > 0, codes
        async with httpx.AsyncClient(base_url=stack.api_url()) as client:
            assert (await client.get("/ready")).status_code == 200
        found = await wait_until(sessions, ids, all_terminal, 120)
        assert {status for status, _ in found.values()} == {"succeeded"}, found
        await check_invariants(sessions, ids)
    finally:
        await engine.dispose()


def _terminate(process: Managed) -> None:
    """SIGTERM to the main process only, as a supervisor (or Kubernetes) sends it."""
    assert process.process is not None
    process.process.send_signal(signal.SIGTERM)


@on_each_broker
async def test_sigterm_lets_a_worker_finish_short_jobs_and_leaves_long_ones_to_others(
    stack: Stack, sessions: SessionFactory
) -> None:
    stack.settings = stack.settings.model_copy(update={"shutdown_grace": 3.0})
    await asyncio.to_thread(stack.start_api)
    worker = await asyncio.to_thread(stack.start_worker)
    short = await submit(stack.api_url(), stack.headers, "sleep", {"seconds": 1.5, "steps": 3})
    long = await submit(stack.api_url(), stack.headers, "sleep", {"seconds": 8, "steps": 16})
    await wait_until(
        sessions, [short, long], lambda found: all(s == "running" for s, _ in found.values()), 20
    )
    _terminate(worker)
    assert worker.process is not None
    exit_code = await asyncio.to_thread(worker.process.wait, 30)
    assert exit_code is not None
    found = await statuses(sessions, [short, long])
    assert found[short] == ("succeeded", 1), found
    assert found[long][0] in {"running", "queued"}, found
    await asyncio.to_thread(stack.start_worker)
    found = await wait_until(sessions, [long], all_terminal, 60)
    assert found[long] == ("succeeded", 2), found
    await check_invariants(sessions, [short, long])


async def test_sigterm_makes_an_api_hand_back_its_quick_jobs(
    stack: Stack, sessions: SessionFactory
) -> None:
    stack.settings = stack.settings.model_copy(update={"shutdown_grace": 1.0})
    api = await asyncio.to_thread(stack.start_api)
    ids = [await submit(stack.api_url(), stack.headers, "nap", {"seconds": 5}) for _ in range(3)]
    await wait_until(
        sessions, ids, lambda found: all(s == "running" for s, _ in found.values()), 10
    )
    _terminate(api)
    assert api.process is not None
    await asyncio.to_thread(api.process.wait, 30)
    found = await statuses(sessions, ids)
    assert all(entry == ("queued", 1) for entry in found.values()), found
    await asyncio.to_thread(stack.start_api)
    found = await wait_until(sessions, ids, all_terminal, 60)
    assert all(entry == ("succeeded", 2) for entry in found.values()), found
    await check_invariants(sessions, ids)
