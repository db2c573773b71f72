"""The API's command lines carry jobq's uvicorn options, as uvicorn itself reads them."""

from __future__ import annotations

from uvicorn.main import main as uvicorn_main

from api.serving import OPTIONS, Worker
from cli.processes import api_argv
from shared.settings import Settings


def test_jobq_api_serves_without_permessage_deflate(settings: Settings) -> None:
    argv = api_argv(settings)
    assert argv[1:3] == ["-m", "uvicorn"]
    context = uvicorn_main.make_context("uvicorn", argv[3:])
    assert context.params["ws_per_message_deflate"] is False
    assert context.params["factory"] is True


def test_gunicorn_workers_take_the_same_options() -> None:
    assert Worker.CONFIG_KWARGS["ws_per_message_deflate"] is False
    assert OPTIONS.items() <= Worker.CONFIG_KWARGS.items()
