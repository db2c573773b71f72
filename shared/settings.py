"""The one settings class. Built at each process entry point and passed down."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.errors import ConfigurationError

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "changethis", "secret", "dev"})
SECRET_FILE = "secret_key"
MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="JOBQ_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Literal["dev", "test", "production"] = "dev"
    data_dir: Path = Path(".jobq")

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/jobq"
    database_pool_size: int = Field(default=10, ge=1)
    # Off: a "SELECT 1" before every checkout cost more than the query it guarded. A connection
    # that died (Postgres restarted) fails its first statement instead, which invalidates the
    # whole pool at once; the requests already on a dead connection get 503, job writes retry.
    database_pre_ping: bool = False
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str | None = None

    secret_key: SecretStr = SecretStr("change-me")
    token_audience: str | None = None
    token_issuer: str | None = None

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_url: str | None = None
    cors_origins: Annotated[list[str], NoDecode] = []
    rate_limit: str = "600/minute"
    max_active_jobs_per_subject: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    result_ttl: int = Field(default=7 * 24 * 3600, ge=60)
    prune_interval: float = Field(default=300.0, ge=1)
    prune_batch: int = Field(default=1000, ge=1)

    flower_host: str = "127.0.0.1"
    flower_port: int = 5555
    flower_user: str = "admin"
    flower_password: SecretStr = SecretStr("change-me")

    worker_concurrency: int = Field(default=2, ge=1)
    # Celery task events from the start. Off, as in Celery: Flower turns them on while it runs
    # (its enable_events, every few seconds), and without it they cost the worker's parent
    # process a Redis PUBLISH per batch of events, about a sixth of the no-op job rate.
    worker_task_events: bool = False
    # Messages a worker holds per child, the one it runs included (Celery's prefetch multiplier).
    # One, as Celery advises for long tasks: a worker busy with long jobs holds none back from
    # an idle worker. Short heavy jobs may run faster with more (4 is Celery's default): the
    # parent then has the next message at hand when a child is done. A worker that dies
    # loses none: its held jobs were never claimed, so the dispatcher sends them again after
    # JOBQ_CLAIM_TIMEOUT (RabbitMQ also returns the unacknowledged messages at once). One held
    # longer than that behind a running job is sent again too; its duplicate's claim fails.
    worker_prefetch: int = Field(default=1, ge=1, le=64)
    kind_modules: Annotated[list[str], NoDecode] = []
    max_job_timeout: float = Field(default=7200.0, gt=0)
    cancel_grace_seconds: float = Field(default=5.0, ge=0)
    progress_interval: float = Field(default=0.25, gt=0)
    cancel_poll_interval: float = Field(default=1.0, gt=0)
    dispatch_interval: float = Field(default=0.5, gt=0)
    dispatch_batch: int = Field(default=500, ge=1)
    # Heavy jobs of one priority handed over together (a batch POST, the submissions one
    # commit gathers) go to Celery as messages of up to this many, each run in turn by one
    # worker process: the per-message cost is paid once per group. 1: a message per job.
    dispatch_group: int = Field(default=8, ge=1, le=64)
    # A job of a group that runs this long hands the group's jobs not yet started back to
    # the head of their queue, one message each, so a long job holds none back from an idle
    # worker process.
    dispatch_group_slice: float = Field(default=0.05, gt=0)
    lease_seconds: float = Field(default=30.0, gt=0)
    shutdown_grace: float = Field(default=25.0, ge=0)
    claim_timeout: float = Field(default=30.0, gt=0)

    event_retention: int = Field(default=24 * 3600, ge=60)
    ws_queue_size: int = Field(default=256, ge=4)
    ws_send_timeout: float = Field(default=10.0, gt=0)
    ws_idle_check: float = Field(default=5.0, gt=0)
    ws_max_lifetime: float = Field(default=3600.0, gt=0)
    ws_max_per_subject: int = Field(default=100, ge=1)

    webhook_allow_private: bool = False
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_timeout: float = Field(default=5.0, gt=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # None: readable lines in dev, one JSON object per line otherwise.
    log_format: Literal["json", "console"] | None = None
    # When set, GET /metrics asks for `Authorization: Bearer <this token>`.
    metrics_token: SecretStr | None = None
    # Seconds between a worker's heartbeats; it counts as alive for three of them.
    worker_heartbeat: float = Field(default=10.0, gt=0)
    # Lets an admin add ?profile=1 to a request and get a pyinstrument report instead.
    profiling: bool = False

    # Test-only crash points, e.g. "after-commit" (the API dies between commit and dispatch).
    failpoints: Annotated[list[str], NoDecode] = []

    @model_validator(mode="after")
    def _failpoints_only_in_tests(self) -> Settings:
        if self.failpoints and self.env != "test":
            raise ValueError("JOBQ_FAILPOINTS may only be set with JOBQ_ENV=test")
        return self

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, data: object) -> object:
        if isinstance(data, dict):
            for key in ("cors_origins", "kind_modules", "failpoints"):
                value = data.get(key)
                if isinstance(value, str):
                    data[key] = [part.strip() for part in value.split(",") if part.strip()]
        return data

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def effective_log_format(self) -> Literal["json", "console"]:
        if self.log_format is not None:
            return self.log_format
        return "console" if self.env == "dev" else "json"

    @property
    def visibility_timeout(self) -> int:
        """Above the longest job a worker may hold, so Redis never re-delivers a running job."""
        return int(self.max_job_timeout + self.cancel_grace_seconds + 600)

    def secret_is_placeholder(self) -> bool:
        return self.secret_key.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS


def load_settings(**overrides: object) -> Settings:
    """Settings for a process entry point.

    In dev, a placeholder secret is replaced by one generated once and kept under data_dir, so
    every process started from the same folder (and `jobq token`) signs with the same key.
    Outside dev a placeholder secret is refused.
    """
    settings = Settings(**overrides)  # type: ignore[arg-type]
    if not settings.secret_is_placeholder():
        if (
            settings.env != "dev"
            and len(settings.secret_key.get_secret_value()) < MIN_SECRET_LENGTH
        ):
            raise ConfigurationError(
                f"JOBQ_SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters outside dev"
            )
        return settings
    if settings.env != "dev":
        raise ConfigurationError(
            "JOBQ_SECRET_KEY is unset or a placeholder; set a long random value "
            "(python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    return settings.model_copy(update={"secret_key": SecretStr(dev_secret(settings.data_dir))})


def dev_secret(data_dir: Path) -> str:
    path = data_dir / SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    try:
        # O_EXCL: when several processes start at once, exactly one writes the key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):
            existing = path.read_text().strip()
            if existing:
                return existing
            time.sleep(0.01)
        raise ConfigurationError(f"{path} is empty; delete it to make a new dev secret") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value
