from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from cli.servers import free_port
from shared.db.migrate import upgrade
from shared.settings import Settings
from tests.conftest import RabbitMQ, Servers
from tests.e2e.processes import Managed, start_api, start_worker


@dataclass(frozen=True)
class Running:
    """An API process and a worker that serve together."""

    api: Managed
    worker: Managed

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api.command[self.api.command.index('--port') + 1]}"


@pytest.fixture(scope="session")
def api_process(settings: Settings, servers: Servers) -> Iterator[Managed]:
    api = start_api(settings, free_port(), servers.tmp / "logs")
    yield api
    api.stop()


@pytest.fixture(scope="session")
def worker_process(settings: Settings, servers: Servers) -> Iterator[Managed]:
    worker = start_worker(settings, servers.tmp / "logs")
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def base_url(api_process: Managed, worker_process: Managed) -> str:
    return Running(api_process, worker_process).base_url


@pytest.fixture(scope="session")
def amqp_processes(settings: Settings, servers: Servers, rabbitmq: RabbitMQ) -> Iterator[Running]:
    """The session's API and worker again, with RabbitMQ as the broker. A database of their own,
    so that the other API's dispatcher never hands their delayed jobs and retries to Redis."""
    name = f"jobq_amqp_{uuid.uuid4().hex[:10]}"
    logs = servers.tmp / "logs"
    # Each step waits on another process (rabbitmqctl, Postgres, a starting worker): side by side.
    with ThreadPoolExecutor(2) as pool:
        vhost = pool.submit(rabbitmq.vhost)
        database_url = servers.create_database(name)
        try:
            upgrade(database_url)
            on_amqp = settings.model_copy(
                update={"database_url": database_url, "broker_url": vhost.result()}
            )
            starting = pool.submit(start_worker, on_amqp, logs, name="amqp-worker")
            api = start_api(on_amqp, free_port(), logs)
            try:
                worker = starting.result()
            except BaseException:
                api.stop()
                raise
        except BaseException:
            servers.drop_database(name)
            raise
    try:
        yield Running(api, worker)
    finally:
        api.stop()
        worker.stop()
        servers.drop_database(name)


@pytest.fixture
def running(broker: str, request: pytest.FixtureRequest) -> Running:
    """The session's API and worker on this test's broker."""
    if broker == "amqp":
        on_amqp: Running = request.getfixturevalue("amqp_processes")
        return on_amqp
    return Running(
        request.getfixturevalue("api_process"), request.getfixturevalue("worker_process")
    )


@pytest.fixture
def http(base_url: str, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as client:
        yield client
