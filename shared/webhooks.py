"""Webhooks: a job's end POSTed to its webhook_url, signed, retried with back-off.

The delivery row is written in the transaction that ends the job (see the repository); the
dispatcher hands due deliveries to the workers as Celery tasks; a worker POSTs the Job JSON
with `X-Jobq-Signature: sha256=<HMAC of the body>` and `X-Jobq-Delivery: <delivery id>` (the
same id on every retry, so receivers can drop duplicates) and records what happened.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import socket
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.engine import SessionFactory
from shared.db.models import Job, WebhookDelivery
from shared.jobs.schemas import JobOut
from shared.settings import Settings

log = logging.getLogger("jobq.webhooks")

SIGNATURE_HEADER = "X-Jobq-Signature"
DELIVERY_HEADER = "X-Jobq-Delivery"
BACKOFF_BASE = 2.0
BACKOFF_MAX = 600.0


class RefusedTarget(ValueError):
    pass


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse URLs that resolve to private, loopback, link-local or other internal addresses.

    Resolves the host (blocking): call it from a thread in async code.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedTarget("webhook_url must be an http or https URL with a host")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise RefusedTarget(f"cannot resolve {parts.hostname}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise RefusedTarget(f"{parts.hostname} resolves to {address}, an internal address")


def backoff(attempts: int) -> float:
    return float(min(BACKOFF_MAX, BACKOFF_BASE * 2.0 ** min(attempts - 1, 20)))


class WebhookSender:
    def __init__(self, sessions: SessionFactory, settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings

    async def deliver(self, delivery_id: uuid.UUID) -> str:
        """One attempt at one delivery; returns its state afterwards."""
        async with self.sessions() as session:
            delivery = await session.get(WebhookDelivery, delivery_id)
            job = await session.get(Job, delivery.job_id) if delivery else None
        if delivery is None or delivery.state != "pending":
            return delivery.state if delivery else "gone"
        if job is None:
            return await self._record(delivery, None, "the job no longer exists", final=True)
        body = JobOut.model_validate(job).model_dump_json().encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "jobq-webhooks",
            SIGNATURE_HEADER: sign(self.settings.secret_key.get_secret_value(), body),
            DELIVERY_HEADER: str(delivery.id),
        }
        try:
            await asyncio.to_thread(
                check_target, delivery.url, allow_private=self.settings.webhook_allow_private
            )
        except RefusedTarget as exc:
            return await self._record(delivery, None, str(exc), final=True)
        import httpx  # here: only workers send webhooks, and the API is spared its 3.6 MB

        timeout = httpx.Timeout(
            self.settings.webhook_timeout, connect=min(3.0, self.settings.webhook_timeout)
        )
        try:
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
                response = await client.post(delivery.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return await self._record(delivery, None, f"{type(exc).__name__}: {exc}"[:500])
        if response.is_success:
            return await self._record(delivery, response.status_code, None)
        return await self._record(delivery, response.status_code, f"HTTP {response.status_code}")

    async def _record(
        self,
        delivery: WebhookDelivery,
        status: int | None,
        error: str | None,
        *,
        final: bool = False,
    ) -> str:
        now = datetime.now(UTC)
        attempts = delivery.attempts + 1
        if error is None:
            values: dict[str, object] = {"state": "delivered", "delivered_at": now}
        elif final or attempts >= self.settings.webhook_max_attempts:
            values = {"state": "failed"}
        else:
            values = {"next_attempt_at": now + timedelta(seconds=backoff(attempts))}
        state = str(values.get("state", "pending"))
        async with self.sessions.begin() as session:
            # Fenced on the attempt count: a duplicate task cannot record the same attempt twice.
            await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery.id,
                    WebhookDelivery.attempts == delivery.attempts,
                    WebhookDelivery.state == "pending",
                )
                .values(attempts=attempts, last_status=status, last_error=error, **values)
            )
        log.info(
            "webhook %s for job %s: %s (%s)", delivery.id, delivery.job_id, state, error or status
        )
        return state


async def latest_delivery(session: AsyncSession, job_id: uuid.UUID) -> WebhookDelivery | None:
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.job_id == job_id)
        .order_by(WebhookDelivery.created_at.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()
