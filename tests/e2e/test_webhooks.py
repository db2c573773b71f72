"""Signed webhooks on a job's end, retried until the receiver takes them, on each broker."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from cli.servers import free_port
from shared.settings import Settings
from tests.conftest import Servers, on_each_broker
from tests.e2e.processes import start_api, start_worker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120), on_each_broker]


class Receiver(ThreadingHTTPServer):
    """Answers 500 to the first delivery, 200 after; keeps what it got."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        super().__init__(("127.0.0.1", free_port()), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers), body))
        self.send_response(500 if len(self.server.received) == 1 else 200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def webhook_stack(
    own_broker: Settings, own_database: str, servers: Servers
) -> Iterator[tuple[str, Settings]]:
    allowed = own_broker.model_copy(
        update={"webhook_allow_private": True, "database_url": own_database}
    )
    worker = start_worker(allowed, servers.tmp / "logs", name="webhooks")
    api = start_api(allowed, free_port(), servers.tmp / "logs")
    yield f"http://127.0.0.1:{api.command[api.command.index('--port') + 1]}", allowed
    api.stop()
    worker.stop()


def test_a_failed_delivery_is_retried_and_the_retry_is_signed(
    webhook_stack: tuple[str, Settings], receiver: Receiver, token: str
) -> None:
    base_url, settings = webhook_stack
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as client:
        job = client.post(
            "/jobs",
            json={
                "kind": "sleep",
                "params": {"seconds": 0.1, "steps": 1},
                "webhook_url": receiver.url,
            },
        ).json()
        deadline = time.monotonic() + 30
        while len(receiver.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(receiver.received) == 2
        for _ in range(50):
            status = client.get(f"/jobs/{job['id']}").json()["webhook"]
            if status and status["state"] == "delivered":
                break
            time.sleep(0.1)
    assert status == {
        "state": "delivered",
        "attempts": 2,
        "last_status": 200,
        "last_error": None,
        "delivered_at": status["delivered_at"],
    }
    (first_headers, _), (headers, body) = receiver.received
    assert headers["X-Jobq-Delivery"] == first_headers["X-Jobq-Delivery"]
    expected = hmac.new(
        settings.secret_key.get_secret_value().encode(), body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(headers["X-Jobq-Signature"], f"sha256={expected}")
    delivered = json.loads(body)
    assert delivered["id"] == job["id"] and delivered["status"] == "succeeded"
    assert delivered["result"] == {"slept": 0.1}
