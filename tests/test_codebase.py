"""The house rules that a machine can check: lint, types, and which package imports which."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    checked = run(str(BIN / "ruff"), "check", ".")
    formatted = run(str(BIN / "ruff"), "format", "--check", ".")
    assert checked.returncode == 0, checked.stdout
    assert formatted.returncode == 0, formatted.stdout


@pytest.mark.timeout(600)
def test_mypy_strict_passes() -> None:
    result = run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout


def imports_of(package: str) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            found.update((str(path.relative_to(ROOT)), name.split(".")[0]) for name in names)
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("api", {"worker", "cli"}),
        ("worker", {"api", "cli", "fastapi", "starlette"}),
        ("shared", {"api", "worker", "cli", "fastapi", "starlette"}),
    ],
)
def test_imports_flow_api_to_shared_from_worker(package: str, forbidden: set[str]) -> None:
    offending = sorted((path, name) for path, name in imports_of(package) if name in forbidden)
    assert offending == []
