"""Bearer tokens: HS256 JWTs signed with JOBQ_SECRET_KEY."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from shared.errors import InvalidToken
from shared.jobs.service import Principal
from shared.settings import Settings

ALGORITHM = "HS256"
LEEWAY_SECONDS = 30
DEFAULT_TTL = 24 * 3600


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
    """The principal a token names. Only HS256 is accepted; `exp` and `sub` are required."""
    try:
        claims = jwt.decode(
            token,
            settings.secret_key.get_secret_value(),
            algorithms=[ALGORITHM],
            audience=settings.token_audience,
            issuer=settings.token_issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "sub"], "verify_aud": settings.token_audience is not None},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except jwt.PyJWTError:
        raise InvalidToken("invalid token") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise InvalidToken("invalid token subject")
    return Principal(subject=subject, admin=claims.get("role") == "admin")
