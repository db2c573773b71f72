from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from pydantic import SecretStr

from shared.errors import InvalidToken
from shared.jobs.service import Principal
from shared.settings import Settings
from shared.tokens import LEEWAY_SECONDS, issue_token, verify_token

OTHER_KEY = "y" * 48


def claims(**extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"sub": "alice", "iat": now, "exp": now + timedelta(hours=1), **extra}


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_issue_then_verify_gives_the_principal(settings: Settings) -> None:
    token = issue_token(settings, "alice")
    assert verify_token(settings, token) == Principal(subject="alice", admin=False)


def test_issue_admin_then_verify_gives_an_admin(settings: Settings) -> None:
    token = issue_token(settings, "root", admin=True)
    assert verify_token(settings, token) == Principal(subject="root", admin=True)


def test_token_is_hs256(settings: Settings) -> None:
    assert jwt.get_unverified_header(issue_token(settings, "alice"))["alg"] == "HS256"


def test_token_expired_within_the_leeway_is_accepted(settings: Settings) -> None:
    token = issue_token(settings, "alice", ttl=-10)
    assert verify_token(settings, token).subject == "alice"


def test_token_expired_beyond_the_leeway_is_refused(settings: Settings) -> None:
    token = issue_token(settings, "alice", ttl=-60)
    with pytest.raises(InvalidToken):
        verify_token(settings, token)


def test_token_signed_with_another_key_is_refused(settings: Settings) -> None:
    token = jwt.encode(claims(), OTHER_KEY, algorithm="HS256")
    with pytest.raises(InvalidToken):
        verify_token(settings, token)


def test_admin_token_signed_with_another_key_is_refused(settings: Settings) -> None:
    token = jwt.encode(claims(role="admin"), OTHER_KEY, algorithm="HS256")
    with pytest.raises(InvalidToken):
        verify_token(settings, token)


def test_alg_none_token_is_refused(settings: Settings) -> None:
    token = jwt.encode(claims(role="admin"), None, algorithm="none")
    with pytest.raises(InvalidToken):
        verify_token(settings, token)


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_hand_made_unsigned_token_is_refused(settings: Settings, alg: str) -> None:
    exp = int((datetime.now(UTC) + timedelta(hours=1)).timestamp())
    token = f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64({'sub': 'alice', 'exp': exp})}."
    with pytest.raises(InvalidToken):
        verify_token(settings, token)


def test_hs512_token_with_the_right_key_is_refused(tmp_path: Path) -> None:
    # HS512 wants a 64-byte key; a shorter one would only add PyJWT's key-length warning.
    settings = Settings(env="test", secret_key=SecretStr("z" * 64), data_dir=tmp_path)
    token = jwt.encode(claims(), settings.secret_key.get_secret_value(), algorithm="HS512")
    with pytest.raises(InvalidToken):
        verify_token(settings, token)


def test_token_without_exp_is_refused(settings: Settings) -> None:
    token = jwt.encode({"sub": "alice"}, settings.secret_key.get_secret_value(), algorithm="HS256")
    with pytest.raises(InvalidToken):
        verify_token(settings, token)


@pytest.mark.parametrize("sub", [None, "", 42, "x" * 256])
def test_token_without_a_valid_subject_is_refused(settings: Settings, sub: object) -> None:
    payload = claims()
    if sub is None:
        del payload["sub"]
    else:
        payload["sub"] = sub
    token = jwt.encode(payload, settings.secret_key.get_secret_value(), algorithm="HS256")
    with pytest.raises(InvalidToken):
        verify_token(settings, token)


@pytest.mark.parametrize("role", ["user", "ADMIN", "administrator"])
def test_only_role_admin_gives_an_admin(settings: Settings, role: str) -> None:
    token = jwt.encode(claims(role=role), settings.secret_key.get_secret_value(), algorithm="HS256")
    assert verify_token(settings, token).admin is False


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "Bearer abc"])
def test_garbage_token_is_refused(settings: Settings, token: str) -> None:
    with pytest.raises(InvalidToken):
        verify_token(settings, token)


def _signed(settings: Settings, **claims: object) -> str:
    now = datetime.now(UTC)
    body: dict[str, object] = {"sub": "alice", "exp": now + timedelta(minutes=5), **claims}
    return jwt.encode(body, settings.secret_key.get_secret_value(), algorithm="HS256")


def test_token_not_yet_valid_is_refused(settings: Settings) -> None:
    token = _signed(settings, nbf=datetime.now(UTC) + timedelta(minutes=5))
    with pytest.raises(InvalidToken):
        verify_token(settings, token)


def test_audience_and_issuer_are_checked_when_configured(settings: Settings) -> None:
    strict = settings.model_copy(
        update={"token_audience": "jobq", "token_issuer": "https://id.example"}
    )
    assert verify_token(strict, issue_token(strict, "alice")).subject == "alice"
    for claims in (
        {},
        {"aud": "other", "iss": "https://id.example"},
        {"aud": "jobq", "iss": "https://evil"},
    ):
        with pytest.raises(InvalidToken):
            verify_token(strict, _signed(strict, **claims))


def test_a_remembered_token_is_still_refused_once_it_expires(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = issue_token(settings, "alice", ttl=60)
    assert verify_token(settings, token) == Principal("alice")  # verified, now remembered
    later = datetime.now(UTC) + timedelta(seconds=60 + LEEWAY_SECONDS + 5)
    monkeypatch.setattr("shared.tokens.time.time", later.timestamp)
    with pytest.raises(InvalidToken, match="expired"):
        verify_token(settings, token)


def test_a_remembered_token_is_refused_under_another_secret(settings: Settings) -> None:
    token = issue_token(settings, "alice")
    assert verify_token(settings, token) == Principal("alice")
    rotated = settings.model_copy(update={"secret_key": SecretStr("another-secret-" + "y" * 40)})
    with pytest.raises(InvalidToken):
        verify_token(rotated, token)
