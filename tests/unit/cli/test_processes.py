"""The API's command lines carry jobq's uvicorn options, as uvicorn itself reads them."""

from __future__ import annotations

from uvicorn.main import main as uvicorn_main

from api.serving import OPTIONS, Worker
from cli.processes import api_argv, worker_argv
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


def test_workers_send_task_events_from_the_start_only_when_asked(settings: Settings) -> None:
    assert "-E" not in worker_argv(settings)
    assert "-E" in worker_argv(settings.model_copy(update={"worker_task_events": True}))


def test_jobq_api_serves_the_sans_io_websockets_protocol(settings: Settings) -> None:
    context = uvicorn_main.make_context("uvicorn", api_argv(settings)[3:])
    assert context.params["ws"] == "websockets-sansio"
