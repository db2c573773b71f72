from __future__ import annotations

import hashlib
import hmac

import pytest

from shared.webhooks import RefusedTarget, backoff, check_target, sign


def test_signature_is_an_hmac_of_the_body() -> None:
    body = b'{"id": "x"}'
    expected = hmac.new(b"secret", body, hashlib.sha256).hexdigest()
    assert sign("secret", body) == f"sha256={expected}"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://[::1]/x",
        "http://10.0.0.1/x",
        "http://192.168.1.1/x",
        "http://172.16.0.1/x",
        "http://169.254.169.254/x",
        "http://0.0.0.0/x",
        "http://localhost/x",
        "ftp://example.com/x",
        "http:///nohost",
    ],
)
def test_internal_or_odd_targets_are_refused(url: str) -> None:
    with pytest.raises(RefusedTarget):
        check_target(url, allow_private=False)


def test_internal_targets_are_allowed_when_configured() -> None:
    check_target("http://127.0.0.1:8080/hook", allow_private=True)


def test_public_literal_addresses_are_accepted() -> None:
    check_target("https://93.184.215.14/hook", allow_private=False)


def test_backoff_doubles_up_to_ten_minutes() -> None:
    assert [backoff(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert backoff(50) == 600.0
