from __future__ import annotations

import logging

import pytest

from api.redaction import RedactQueryTokens
from shared.logs import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/ws/jobs/1?token=abc.def.ghi", "/ws/jobs/1?token=[redacted]"),
        ("/ws/jobs?after=3&token=abc&x=1", "/ws/jobs?after=3&token=[redacted]&x=1"),
        (
            '"WebSocket /ws/jobs?TOKEN=abc" [accepted]',
            '"WebSocket /ws/jobs?TOKEN=[redacted]" [accepted]',
        ),
        ("/jobs?status=running", "/jobs?status=running"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_filter_rewrites_message_arguments() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s"',
        ("1.2.3.4", "/ws?token=s3cret"),
        None,
    )
    assert RedactQueryTokens().filter(record)
    assert "s3cret" not in record.getMessage()
