from __future__ import annotations

from pathlib import Path

from shared.settings import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_env_example_lists_every_setting() -> None:
    text = ENV_EXAMPLE.read_text()
    missing = [name for name in Settings.model_fields if f"JOBQ_{name.upper()}=" not in text]
    assert missing == []
