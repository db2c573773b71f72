"""The API process's collector settings (api.main.settle_gc), in an interpreter of their own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from api.main import GC_THRESHOLDS, create_app
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


def test_settle_gc_freezes_start_up_and_collects_the_young_less_often() -> None:
    script = (
        "import gc; from api.main import settle_gc; "
        "before = gc.get_freeze_count(); settle_gc(); "
        "print(before, gc.get_freeze_count(), *gc.get_threshold())"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    before, frozen, *thresholds = map(int, out)
    assert before == 0 and frozen > 10_000  # the modules and the app's objects
    assert tuple(thresholds) == GC_THRESHOLDS


def test_apps_built_with_settings_leave_the_collector_alone(tmp_path: Path) -> None:
    """Tests build many apps in one interpreter: only a server's own entry point tunes it."""
    app = create_app(Settings(env="test", data_dir=tmp_path, secret_key="k" * 40))
    assert app.state.tune_gc is False
