"""Log lines as an operator reads them: JSON objects (or readable lines), with their context,
and never a credential. Each case runs in a fresh interpreter: logging is process-global."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.logs import CREDENTIALS, QUERY_TOKEN, REDACTED, redact
from shared.logs import JWT as JWT_SHAPE

ROOT = Path(__file__).resolve().parents[2]
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"

SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from shared.logs import bound, configure_logging
    configure_logging("INFO", sys.argv[1])
    log = logging.getLogger("jobq.test")

    def verify(token, secret):
        raise ValueError("bad signature")

    with bound(request_id="req-1", job_id="j-1", kind="echo", attempt=2, ignored=None):
        log.info("hello %s", "world", extra={"path": "/jobs"})
        try:
            verify("{jwt}", "s3cr3t-value-in-a-local")
        except ValueError:
            log.exception("verification failed")
    log.warning("GET /ws/jobs/1?token={jwt} Authorization: Bearer abc.def Basic dXNlcjpwYXNz")
    logging.getLogger("uvicorn.error").info("from uvicorn")
    logging.getLogger("httpx").info("HTTP Request: POST https://hooks.example/T0/secret")
    """
).replace("{jwt}", JWT)


def run(fmt: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, fmt],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stderr


def test_json_lines_carry_their_context_and_no_secret() -> None:
    output = run("json")
    lines = [json.loads(line) for line in output.splitlines()]
    hello, failed, warning, uvicorn = lines  # httpx's INFO line is not written
    assert hello["event"] == "hello world"
    assert hello["level"] == "info"
    assert hello["logger"] == "jobq.test"
    assert hello["path"] == "/jobs"
    assert {hello["request_id"], hello["job_id"], hello["kind"], hello["attempt"]} == {
        "req-1",
        "j-1",
        "echo",
        2,
    }
    assert "ignored" not in hello
    assert hello["timestamp"].endswith("Z")
    assert failed["exception"][0]["exc_type"] == "ValueError"
    assert "request_id" not in warning  # the context ended with its block
    assert "[redacted]" in warning["event"]
    assert uvicorn["event"] == "from uvicorn"
    for secret in (JWT, "s3cr3t-value", "abc.def", "dXNlcjpwYXNz", "hooks.example"):
        assert secret not in output
    assert "locals" not in output


@pytest.mark.parametrize("fmt", ["console"])
def test_console_lines_are_readable_and_redacted(fmt: str) -> None:
    output = run(fmt)
    assert "hello world" in output
    assert "request_id=req-1" in output
    assert "Traceback" in output and "ValueError: bad signature" in output
    for secret in (JWT, "s3cr3t-value", "abc.def"):
        assert secret not in output
    with pytest.raises(json.JSONDecodeError):
        json.loads(output.splitlines()[0])


def _every_rewrite(text: str) -> str:
    text = QUERY_TOKEN.sub(r"\1" + REDACTED, text)
    text = CREDENTIALS.sub(r"\1 " + REDACTED, text)
    return JWT_SHAPE.sub(REDACTED, text)


PIECES = st.sampled_from(
    ["token=", "?token=", "&access_token=", "Bearer ", "basic ", "BEARER\t", "eyJ", "EYJ", JWT]
)


@given(st.lists(st.one_of(st.text(max_size=12), PIECES), max_size=8).map("".join))
def test_the_quick_check_never_skips_a_credential(text: str) -> None:
    """redact skips its rewrites when a cheap search finds no sign of a credential: it must
    answer exactly as the rewrites would, whatever the text."""
    assert redact(text) == _every_rewrite(text)
