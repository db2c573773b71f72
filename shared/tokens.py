"""Bearer tokens: HS256 JWTs signed with JOBQ_SECRET_KEY."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from shared.errors import InvalidToken
from shared.jobs.service import Principal
from shared.settings import Settings

ALGORITHM = "HS256"
LEEWAY_SECONDS = 30
DEFAULT_TTL = 24 * 3600
VERIFIED_TOKENS = 4096


def issue_token(
    settings: Settings, subject: str, *, admin: bool = False, ttl: int = DEFAULT_TTL
) -> str:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {"sub": subject, "iat": now, "exp": now + timedelta(seconds=ttl)}
    if admin:
        claims["role"] = "admin"
    if settings.token_audience:
        claims["aud"] = settings.token_audience
    if settings.token_issuer:
        claims["iss"] = settings.token_issuer
    return jwt.encode(claims, settings.secret_key.get_secret_value(), algorithm=ALGORITHM)


def verify_token(settings: Settings, token: str) -> Principal:
    """The principal a token names. Only HS256 is accepted; `exp` and `sub` are required.

    A client sends the same token with every request: a token once verified is remembered
    (the last VERIFIED_TOKENS of them), and only its expiry is checked again.
    """
    principal, expires = _verified(
        settings.secret_key.get_secret_value(),
        settings.token_audience,
        settings.token_issuer,
        token,
    )
    if time.time() > expires + LEEWAY_SECONDS:
        raise InvalidToken("token expired")
    return principal


@functools.lru_cache(maxsize=VERIFIED_TOKENS)
def _verified(
    secret: str, audience: str | None, issuer: str | None, token: str
) -> tuple[Principal, float]:
    """The token's principal and expiry (a Unix time), or InvalidToken (never remembered)."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "sub"], "verify_aud": audience is not None},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except jwt.PyJWTError:
        raise InvalidToken("invalid token") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise InvalidToken("invalid token subject")
    principal = Principal(subject=subject, admin=claims.get("role") == "admin")
    return principal, float(claims["exp"])
