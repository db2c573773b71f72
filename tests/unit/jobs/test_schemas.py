from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from shared.jobs.schemas import JobSubmission, decode_cursor, encode_cursor
from shared.jobs.states import Priority


def raw_cursor(payload: object) -> str:
    """A cursor carrying any JSON payload, made the way encode_cursor makes one."""
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "created_at",
    [
        datetime(2024, 5, 17, 12, 30, 45, 123456, tzinfo=UTC),
        datetime(2024, 5, 17, 12, 30, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    ],
)
def test_cursor_round_trip(created_at: datetime) -> None:
    job_id = uuid.uuid4()
    decoded = decode_cursor(encode_cursor(created_at, job_id))
    assert decoded == (created_at, job_id)
    assert decoded[0].utcoffset() == created_at.utcoffset()


def test_cursor_is_url_safe_without_padding() -> None:
    cursor = encode_cursor(datetime(2024, 1, 1, tzinfo=UTC), uuid.uuid4())
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize("cursor", ["", "garbage", "not a cursor!", "eyJ9", raw_cursor("hello")])
def test_decode_cursor_refuses_garbage(cursor: str) -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(cursor)


@pytest.mark.parametrize("cursor", ["a", "abcde", "é", "ab\x00c"])
def test_decode_cursor_refuses_bad_base64(cursor: str) -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(cursor)


def test_decode_cursor_refuses_a_naive_timestamp() -> None:
    cursor = raw_cursor(["2024-05-17T12:30:45", str(uuid.uuid4())])
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(cursor)


@pytest.mark.parametrize(
    "payload",
    [
        ["2024-05-17T12:30:45+00:00"],
        ["2024-05-17T12:30:45+00:00", str(uuid.uuid4()), "extra"],
        ["2024-05-17T12:30:45+00:00", "not-a-uuid"],
        [12345, str(uuid.uuid4())],
        ["yesterday", str(uuid.uuid4())],
        None,
        42,
    ],
)
def test_decode_cursor_refuses_a_malformed_payload(payload: object) -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(raw_cursor(payload))


@pytest.mark.parametrize("job_id", [123, 1.5, ["a"], {"a": 1}, True])
def test_decode_cursor_refuses_a_non_string_id(job_id: object) -> None:
    # GET /jobs only maps ValueError to 422, so anything else here is a 500.
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(raw_cursor(["2024-05-17T12:30:45+00:00", job_id]))


def test_decode_cursor_refuses_a_json_object() -> None:
    payload = {"2024-05-17T12:30:45+00:00": 1, str(uuid.uuid4()): 2}
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(raw_cursor(payload))


def test_submission_defaults() -> None:
    submission = JobSubmission.model_validate({"kind": "echo"})
    assert submission.params == {}
    assert submission.priority is Priority.NORMAL
    assert submission.run_at is None
    assert submission.delay_seconds is None
    assert submission.max_attempts is None


def test_submission_refuses_run_at_with_delay_seconds() -> None:
    with pytest.raises(ValidationError, match="not both"):
        JobSubmission.model_validate(
            {"kind": "echo", "run_at": "2030-01-01T00:00:00+00:00", "delay_seconds": 5}
        )


def test_submission_accepts_run_at_with_an_offset() -> None:
    submission = JobSubmission.model_validate(
        {"kind": "echo", "run_at": "2030-01-01T09:00:00+02:00"}
    )
    assert submission.run_at == datetime(2030, 1, 1, 7, 0, tzinfo=UTC)


def test_submission_refuses_a_naive_run_at() -> None:
    with pytest.raises(ValidationError) as info:
        JobSubmission.model_validate({"kind": "echo", "run_at": "2030-01-01T00:00:00"})
    assert info.value.errors()[0]["type"] == "timezone_aware"


def test_submission_refuses_unknown_fields() -> None:
    with pytest.raises(ValidationError) as info:
        JobSubmission.model_validate({"kind": "echo", "colour": "blue"})
    assert info.value.errors()[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize("max_attempts", [1, 20])
def test_submission_accepts_max_attempts_in_range(max_attempts: int) -> None:
    submission = JobSubmission.model_validate({"kind": "echo", "max_attempts": max_attempts})
    assert submission.max_attempts == max_attempts


@pytest.mark.parametrize("max_attempts", [0, 21, -1])
def test_submission_refuses_max_attempts_out_of_range(max_attempts: int) -> None:
    with pytest.raises(ValidationError):
        JobSubmission.model_validate({"kind": "echo", "max_attempts": max_attempts})


@pytest.mark.parametrize(
    "body",
    [
        {"kind": ""},
        {"kind": "echo", "priority": "urgent"},
        {"kind": "echo", "delay_seconds": -1},
        {"kind": "echo", "timeout_seconds": 0},
        {"kind": "echo", "webhook_url": "not a url"},
        {"params": {}},
    ],
)
def test_submission_refuses_bad_fields(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        JobSubmission.model_validate(body)
