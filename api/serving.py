"""How the API is served: the uvicorn options that every way of starting it shares.

`jobq api` and `jobq dev` (uvicorn's command line), Gunicorn's workers (the image), the tests
and the benchmarks all take them from here, so that what is measured is what ships.
"""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker

# No permessage-deflate on event streams: jobq's events are a few hundred bytes of JSON, and a
# compressor per socket cost about a quarter of a fan-out's CPU per message (6,011 -> 8,213
# msg/s to 1,000 watchers without it) and about 37 KB of memory a socket.
# And uvicorn's sans-I/O websockets protocol rather than the legacy one "auto" picks: 3 KB
# less a socket (1,000 watchers: 154 -> 151 MB), the same keepalive pings and flow control.
OPTIONS: dict[str, Any] = {"ws_per_message_deflate": False, "ws": "websockets-sansio"}
# The same, as uvicorn's command line takes them.
FLAGS = [
    item
    for name, value in OPTIONS.items()
    for item in (f"--{name.replace('_', '-')}", str(value).lower())
]


class Worker(UvicornWorker):  # type: ignore[misc]  # untyped
    """Gunicorn's Uvicorn worker with jobq's options."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {**UvicornWorker.CONFIG_KWARGS, **OPTIONS}
