"""RedisWire writes the message Celery's own send_task writes, onto the same list."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any

from redis import Redis

from cli.servers import free_port
from shared.broker import Publisher, RedisWire, create_celery
from shared.keys import queue_for
from shared.settings import Settings


@dataclass
class FakeJob:
    id: uuid.UUID
    priority: str
    timeout_seconds: float


def _popped(client: Redis, queue: str) -> dict[str, Any]:
    raw = client.rpop(queue)
    assert isinstance(raw, bytes), f"nothing on {queue}"
    message: dict[str, Any] = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


def _without_ids(message: dict[str, Any]) -> dict[str, Any]:
    """The message, less what is new for every message (the task id, the delivery tag)."""
    task_id = message["headers"]["id"]
    assert message["headers"]["root_id"] == message["properties"]["correlation_id"] == task_id
    headers = {k: v for k, v in message["headers"].items() if k not in ("id", "root_id")}
    properties = {
        k: v
        for k, v in message["properties"].items()
        if k not in ("correlation_id", "delivery_tag")
    }
    return {**message, "headers": headers, "properties": properties}


async def test_the_wire_message_is_what_send_task_writes(own_broker: Settings) -> None:
    publisher = Publisher(create_celery(own_broker), own_broker.cancel_grace_seconds)
    assert publisher.wire is not None
    client = Redis.from_url(own_broker.effective_broker_url)
    try:
        for priority in ("high", "normal", "low"):
            job = FakeJob(uuid.uuid4(), priority, 30.0)
            assert publisher.send_many([job]) == []  # through kombu
            assert await publisher.publish_many([job]) == []  # through the wire
            queue = queue_for(priority)
            assert client.llen(queue) == 2
            by_kombu, by_wire = _popped(client, queue), _popped(client, queue)
            assert by_wire["headers"]["id"] != by_kombu["headers"]["id"]
            assert _without_ids(by_wire) == _without_ids(by_kombu)
            assert by_wire["body"][1] == {"job_id": str(job.id)}
    finally:
        await publisher.aclose()
        client.close()


async def test_a_batch_keeps_its_order_within_each_queue(own_broker: Settings) -> None:
    publisher = Publisher(create_celery(own_broker), own_broker.cancel_grace_seconds)
    jobs = [FakeJob(uuid.uuid4(), ("normal", "high")[i % 2], 10.0) for i in range(6)]
    client = Redis.from_url(own_broker.effective_broker_url)
    try:
        assert await publisher.publish_many(jobs) == []
        for priority in ("normal", "high"):
            sent = [str(job.id) for job in jobs if job.priority == priority]
            popped = [_popped(client, queue_for(priority))["body"][1]["job_id"] for _ in sent]
            assert popped == sent  # BRPOP takes from the right: first in, first out
    finally:
        await publisher.aclose()
        client.close()


async def test_an_unreachable_broker_fails_the_batch_and_marks_it_unhealthy(
    settings: Settings,
) -> None:
    down = settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{free_port()}/0"})
    publisher = Publisher(create_celery(down), down.cancel_grace_seconds)
    jobs = [FakeJob(uuid.uuid4(), "normal", 10.0) for _ in range(3)]
    try:
        assert await publisher.publish_many(jobs) == [job.id for job in jobs]
        assert not publisher.healthy
    finally:
        await publisher.aclose()


def test_only_plain_redis_urls_take_the_wire(settings: Settings) -> None:
    amqp = settings.model_copy(update={"broker_url": "amqp://guest:guest@127.0.0.1:5672//"})
    assert RedisWire.handles(create_celery(settings))
    assert not RedisWire.handles(create_celery(amqp))
    for other in (
        "redis://127.0.0.1:1/0;redis://127.0.0.1:2/0",  # kombu's failover list
        "redis://127.0.0.1:6379/0?ssl_cert_reqs=none",  # options kombu reads its own way
    ):
        other_settings = settings.model_copy(update={"broker_url": other})
        assert not RedisWire.handles(create_celery(other_settings))


async def test_a_group_goes_as_one_run_jobs_message_as_send_task_writes_it(
    own_broker: Settings,
) -> None:
    celery = create_celery(own_broker)
    publisher = Publisher(celery, own_broker.cancel_grace_seconds, group=4, group_slice=0.5)
    jobs = [FakeJob(uuid.uuid4(), "normal", timeout) for timeout in (10.0, 30.0, 20.0)]
    client = Redis.from_url(own_broker.effective_broker_url)
    try:
        assert publisher.send_many(jobs) == []  # through kombu
        assert await publisher.publish_many(jobs) == []  # through the wire
        queue = queue_for("normal")
        assert client.llen(queue) == 2
        by_kombu, by_wire = _popped(client, queue), _popped(client, queue)
        assert _without_ids(by_wire) == _without_ids(by_kombu)
        assert by_wire["headers"]["task"] == "jobq.run_jobs"
        assert by_wire["body"][1] == {"job_ids": [str(job.id) for job in jobs]}
        # The longest job's limit, and the slice each job before the last may run.
        assert by_wire["headers"]["timelimit"] == [publisher.time_limit(30.0) + 2 * 0.5, None]
    finally:
        await publisher.aclose()
        client.close()


def test_groups_are_cut_evenly_per_priority_in_order(settings: Settings) -> None:
    publisher = Publisher(create_celery(settings), settings.cancel_grace_seconds, group=8)
    normal = [FakeJob(uuid.uuid4(), "normal", 10.0) for _ in range(12)]
    high = FakeJob(uuid.uuid4(), "high", 10.0)
    messages = publisher.outgoing([*normal[:5], high, *normal[5:]])
    assert [(m.task, m.priority, len(m.job_ids)) for m in messages] == [
        ("jobq.run_jobs", "normal", 6),
        ("jobq.run_jobs", "normal", 6),
        ("jobq.run_job", "high", 1),
    ]
    assert [i for m in messages[:2] for i in m.job_ids] == [job.id for job in normal]
    assert messages[2].kwargs == {"job_id": str(high.id)}
    # One a message, when asked (a group's jobs handed back), or by default.
    assert {len(m.job_ids) for m in publisher.outgoing(normal, group=1)} == {1}
    single = Publisher(create_celery(settings), settings.cancel_grace_seconds)
    assert len(single.outgoing(normal)) == 12


async def test_jobs_sent_to_the_front_are_taken_next_in_their_order(
    own_broker: Settings,
) -> None:
    publisher = Publisher(create_celery(own_broker), own_broker.cancel_grace_seconds)
    waiting = [FakeJob(uuid.uuid4(), "normal", 10.0) for _ in range(2)]
    back = [FakeJob(uuid.uuid4(), "normal", 10.0) for _ in range(3)]
    client = Redis.from_url(own_broker.effective_broker_url)
    try:
        assert await publisher.publish_many(waiting) == []
        assert await publisher.publish_many(back, group=1, front=True) == []
        queue = queue_for("normal")
        taken = [_popped(client, queue)["body"][1]["job_id"] for _ in range(5)]
        assert taken == [str(job.id) for job in [*back, *waiting]]
    finally:
        await publisher.aclose()
        client.close()
