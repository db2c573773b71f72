"""docker-compose.yml and the Dockerfiles, checked without a Docker engine: the compose file
against the compose-spec schema, the Dockerfiles with hadolint, and everything they name
(files, commands, modules, settings) against the project."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import app as cli_app
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCKERFILES = ["Dockerfile.api", "Dockerfile.worker"]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_compose_file_matches_the_compose_spec() -> None:
    result = subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            "docker-compose.yml",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_passes_hadolint(dockerfile: str) -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), dockerfile], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_copies_files_that_exist_and_runs_as_non_root(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, flags=re.MULTILINE):
        *sources, _ = line.split()
        assert all((ROOT / source).exists() for source in sources), line
    assert re.search(r"^USER (?!root|0\b)\S+", text, flags=re.MULTILINE)
    assert text.count("FROM ") >= 2  # multi-stage: the build tools stay behind


def commands() -> list[list[str]]:
    found = [
        service["command"] for service in compose()["services"].values() if "command" in service
    ]
    for dockerfile in DOCKERFILES:
        cmd = re.search(r"^CMD (\[.*\])$", (ROOT / dockerfile).read_text(), flags=re.MULTILINE)
        assert cmd is not None
        found.append(json.loads(cmd.group(1)))
    return found


def test_every_command_names_something_that_exists() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    cli_commands = {
        command.name or getattr(command.callback, "__name__", "")
        for command in cli_app.registered_commands
    }
    for command in commands():
        program = command[0]
        if program == "jobq":
            assert "jobq" in scripts and command[1] in cli_commands, command
        elif program == "gunicorn":
            module, _, factory = command[1].removesuffix("()").partition(":")
            assert hasattr(importlib.import_module(module), factory), command
            worker_class = command[command.index("--worker-class") + 1]
            assert importlib.util.find_spec(worker_class.rsplit(".", 1)[0]) is not None
        elif program == "redis-server":
            continue  # the redis image's own
        else:
            pytest.fail(f"unknown program in {command}")
    assert importlib.util.find_spec("worker.app") is not None  # the worker healthcheck's app


def test_build_files_exist_and_settings_are_real() -> None:
    fields = {f"JOBQ_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose()["services"].items():
        if "build" in service:
            assert (ROOT / service["build"]["dockerfile"]).exists(), name
        for variable in service.get("environment", {}):
            assert not variable.startswith("JOBQ_") or variable in fields, (name, variable)
