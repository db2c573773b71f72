"""Every name that crosses a process boundary: Celery task and queues, Redis keys, lock ids."""

from shared.jobs.states import Priority

RUN_JOB_TASK = "jobq.run_job"
# Several jobs handed over together, run in turn by one worker process (see shared/broker.py).
RUN_JOBS_TASK = "jobq.run_jobs"
DELIVER_WEBHOOK_TASK = "jobq.deliver_webhook"

QUEUE_PREFIX = "jobq"
# On Redis, one queue per priority, listed in the order workers drain them.
PRIORITY_QUEUES: tuple[str, ...] = tuple(f"{QUEUE_PREFIX}.{p}" for p in ("high", "normal", "low"))
# On RabbitMQ, one queue for every priority, ordered by each message's own priority: a
# consumer of several queues takes from them in no set order. A name of its own, because
# RabbitMQ refuses to declare an existing queue again with other arguments.
PRIORITIZED_QUEUE = f"{QUEUE_PREFIX}.jobs"
# Every queue a worker consumes, whichever the broker.
QUEUES: tuple[str, ...] = (*PRIORITY_QUEUES, PRIORITIZED_QUEUE)

# pg_try_advisory_xact_lock key held by whichever process is dispatching due jobs.
DISPATCH_LOCK_ID = 0x6A6F6271_0001
# pg_try_advisory_xact_lock key held by whichever process is pruning finished jobs.
PRUNE_LOCK_ID = 0x6A6F6271_0002


def queue_for(priority: Priority | str) -> str:
    return f"{QUEUE_PREFIX}.{Priority(priority).value}"


def events_channel(db: int) -> str:
    """Every job event, for every API process's hub: one channel, one subscription per process.

    Pub/sub ignores Redis database numbers, so the channel names its database: deployments
    sharing a Redis server on different databases never hear each other's events.
    """
    return f"jobq:events@{db}"


def event_stream(job_id: object) -> str:
    """The per-job Redis Stream that keeps a job's recent events for replay."""
    return f"jobq:job-events:{job_id}"


# A hash of job counters and histogram buckets, written by whoever makes a job's transition
# (API or worker) and read by every API's /metrics: the same figures from any process.
JOB_METRICS = "jobq:metrics:jobs"


def rate_limit_keys(subject: str, window_ms: int) -> tuple[str, str]:
    """A subject's request counters for a rate-limit window: the previous one, the current."""
    base = f"jobq:ratelimit:{window_ms}:{subject}"
    return f"{base}:previous", f"{base}:current"


# A sorted set of live workers: member = Celery node name, score = time of its last heartbeat.
WORKERS = "jobq:workers"


def redis_db(client: object) -> int:
    """The database number a redis-py client (sync or asyncio) talks to."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    return int(kwargs.get("db", 0) or 0)
