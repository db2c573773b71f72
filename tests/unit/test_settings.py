from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.errors import ConfigurationError
from shared.settings import SECRET_FILE, load_settings

REAL_SECRET = "s3cr3t-" + "k" * 48


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No `.env` file and no JOBQ_ variables but the ones a test sets."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("JOBQ_"):
            monkeypatch.delenv(name)
    yield


@pytest.mark.parametrize("env", ["production", "test"])
@pytest.mark.parametrize("secret", ["change-me", "changeme", "", "  Secret  "])
def test_placeholder_secret_is_refused_outside_dev(env: str, secret: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="JOBQ_SECRET_KEY"):
        load_settings(env=env, secret_key=secret, data_dir=tmp_path / "data")


def test_placeholder_secret_from_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBQ_ENV", "production")
    monkeypatch.setenv("JOBQ_SECRET_KEY", "change-me")
    with pytest.raises(ConfigurationError):
        load_settings()


def test_dev_placeholder_secret_is_replaced_by_one_kept_under_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = load_settings(env="dev", secret_key="change-me", data_dir=data_dir)
    secret = settings.secret_key.get_secret_value()
    assert not settings.secret_is_placeholder()
    assert len(secret) >= 32
    assert (data_dir / SECRET_FILE).read_text().strip() == secret


def test_dev_secret_file_is_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    load_settings(env="dev", secret_key="change-me", data_dir=data_dir)
    assert stat.S_IMODE((data_dir / SECRET_FILE).stat().st_mode) == 0o600


def test_dev_secret_is_the_same_on_a_second_call(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = load_settings(env="dev", secret_key="change-me", data_dir=data_dir)
    second = load_settings(env="dev", secret_key="change-me", data_dir=data_dir)
    assert first.secret_key.get_secret_value() == second.secret_key.get_secret_value()


@pytest.mark.parametrize("env", ["dev", "test", "production"])
def test_a_real_secret_is_kept_as_given(env: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = load_settings(env=env, secret_key=REAL_SECRET, data_dir=data_dir)
    assert settings.secret_key.get_secret_value() == REAL_SECRET
    assert not (data_dir / SECRET_FILE).exists()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a,b", ["a", "b"]),
        ("http://localhost:3000", ["http://localhost:3000"]),
        (" https://a.example , https://b.example ,", ["https://a.example", "https://b.example"]),
        ("", []),
    ],
)
def test_cors_origins_parse_a_comma_list(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv("JOBQ_CORS_ORIGINS", value)
    assert load_settings(secret_key=REAL_SECRET).cors_origins == expected


def test_kind_modules_parse_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBQ_KIND_MODULES", "acme.kinds, acme.more_kinds")
    assert load_settings(secret_key=REAL_SECRET).kind_modules == ["acme.kinds", "acme.more_kinds"]


def test_settings_are_read_from_a_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("JOBQ_ENV=production\nJOBQ_SECRET_KEY=change-me\n")
    with pytest.raises(ConfigurationError):
        load_settings()


def test_broker_url_defaults_to_the_redis_url() -> None:
    settings = load_settings(secret_key=REAL_SECRET, redis_url="redis://example:6379/3")
    assert settings.effective_broker_url == "redis://example:6379/3"


def test_short_secret_is_refused_outside_dev(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="at least 32"):
        load_settings(env="production", secret_key="short-but-not-a-placeholder")
