"""A small synchronous HTTP client for the jobq API, used by the client commands."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect as ws_connect

from shared.events import JobEvent
from shared.jobs.schemas import JobOut, JobPage
from shared.jobs.states import is_terminal

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT = 10.0
POLL_INTERVAL = 0.5
MAX_STREAM_FAILURES = 3
# WebSocket close codes that no retry can fix.
FATAL_CLOSES = {
    4401: "the token was refused (expired?); make a new one with `jobq token NAME`",
    4404: "no such job, or not yours",
}

EXIT_CLIENT_ERROR = 2  # the request was refused (4xx), or no token
EXIT_UNAVAILABLE = 3  # no answer, or a server error (5xx)


class ClientError(Exception):
    """A failed request, with the exit code the command should end with."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class JobqClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = TIMEOUT) -> None:
        if not token:
            raise ClientError(
                "JOBQ_TOKEN is not set; make one with `jobq token NAME`", EXIT_CLIENT_ERROR
            )
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._ws_base = "ws" + self.base_url.removeprefix("http")
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=timeout)

    def __enter__(self) -> JobqClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def submit(self, body: dict[str, Any]) -> JobOut:
        return JobOut.model_validate(self._request("POST", "/jobs", json=body))

    def get(self, job_id: str) -> JobOut:
        return JobOut.model_validate(self._request("GET", f"/jobs/{_job_id(job_id)}"))

    def list_jobs(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        query = {"status": status, "kind": kind, "limit": limit, "cursor": cursor}
        params = {key: value for key, value in query.items() if value is not None}
        return JobPage.model_validate(self._request("GET", "/jobs", params=params))

    def retry(self, job_id: str) -> JobOut:
        return JobOut.model_validate(self._request("POST", f"/jobs/{_job_id(job_id)}/retry"))

    def cancel(self, job_id: str) -> JobOut:
        return JobOut.model_validate(self._request("POST", f"/jobs/{_job_id(job_id)}/cancel"))

    def follow(self, job_id: str) -> Iterator[JobOut]:
        """The job each time it changes, from its WebSocket event stream, ending when it ends.

        A dropped connection is resumed with `?after=SEQ`; if the stream cannot be had at all,
        the job is polled instead.
        """
        job = self.get(job_id)
        yield job
        last_seq: int | None = None
        failures = 0
        while not is_terminal(job.status):
            query = f"?after={last_seq}" if last_seq is not None else ""
            url = f"{self._ws_base}/ws/jobs/{job.id}{query}"
            code: int | None = None
            try:
                with ws_connect(url, additional_headers=self._headers, open_timeout=TIMEOUT) as ws:
                    try:
                        for raw in ws:
                            event = JobEvent.model_validate_json(raw)
                            last_seq = event.seq
                            job = job.model_copy(
                                update={
                                    "status": event.status,
                                    "progress": event.progress,
                                    "result": event.result,
                                    "error": event.error,
                                }
                            )
                            failures = 0
                            yield job
                    except ConnectionClosed:
                        pass
                    code = ws.close_code
            except (OSError, InvalidHandshake, TimeoutError):
                failures += 1
            if code in FATAL_CLOSES:
                raise ClientError(FATAL_CLOSES[code], EXIT_CLIENT_ERROR)
            if code is not None and code not in (1000, 1001):
                failures += 1  # too many connections, too slow, a server error: back off
            if failures >= MAX_STREAM_FAILURES:
                # No stream to be had (a proxy without WebSockets, say): poll instead.
                while not is_terminal(job.status):
                    time.sleep(POLL_INTERVAL)
                    job = self.get(job_id)
                    yield job
            elif failures:
                time.sleep(POLL_INTERVAL * failures)
        # The record, with every field (finished_at and the like) as stored.
        yield self.get(job_id)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ClientError(f"{self.base_url} did not answer in time", EXIT_UNAVAILABLE) from None
        except httpx.TransportError as exc:
            raise ClientError(
                f"cannot reach {self.base_url} ({exc}); is the API running? (JOBQ_URL)",
                EXIT_UNAVAILABLE,
            ) from None
        if response.is_success:
            return response.json()
        code = EXIT_CLIENT_ERROR if response.status_code < 500 else EXIT_UNAVAILABLE
        raise ClientError(f"{response.status_code}: {_detail(response)}", code)


def _job_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ClientError(f"{value!r} is not a job id", EXIT_CLIENT_ERROR) from None


def _detail(response: httpx.Response) -> str:
    """The server's `detail`, with 422 validation errors one per line."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text or response.reason_phrase
    if isinstance(detail, list):
        return "".join("\n" + _validation_error(item) for item in detail)
    return str(detail)


def _validation_error(item: Any) -> str:
    if not isinstance(item, dict):
        return f"  {item}"
    location = ".".join(str(part) for part in item.get("loc", []))
    return f"  {location}: {item.get('msg', item)}"
