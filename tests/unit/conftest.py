"""Fixtures for pure unit tests: no database, no Redis, no network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.settings import Settings

UNIT_SECRET = "x" * 48


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Overrides the session fixture of tests/conftest.py, which starts real servers.

    Runs from tmp_path with no JOBQ_ variables, so neither a `.env` file nor the caller's
    environment can change what the test sees.
    """
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("JOBQ_"):
            monkeypatch.delenv(name)
    return Settings(env="test", secret_key=SecretStr(UNIT_SECRET), data_dir=tmp_path)
