"""What `jobq dev` prints once the stack answers: where everything is and how to use it."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape

SAMPLE_JOB = '{"kind":"sleep","params":{"seconds":5}}'


def browsable_host(host: str) -> str:
    """A host a browser can open: wildcard binds are reached over loopback."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


@dataclass(frozen=True)
class Banner:
    api_url: str
    flower_url: str
    flower_user: str
    flower_password: str
    token: str
    database: str
    redis: str

    @property
    def dashboard_url(self) -> str:
        """Opens the dashboard signed in: the page takes the token from the fragment, which
        browsers never send to the server, and then drops it from the address bar."""
        return f"{self.api_url}/#token={self.token}"

    def lines(self) -> list[str]:
        token = shlex.quote(self.token)
        curl = (
            'curl -H "Authorization: Bearer $JOBQ_TOKEN" '
            f"-H 'Content-Type: application/json' -d '{SAMPLE_JOB}' {self.api_url}/jobs"
        )
        return [
            "",
            "[bold green]jobq dev is up[/]",
            f"  Dashboard  {self.dashboard_url}",
            f"  API        {self.api_url}   (OpenAPI docs: {self.api_url}/docs)",
            f"  Flower     {self.flower_url}   user [bold]{escape(self.flower_user)}[/]  "
            f"password [bold]{escape(self.flower_password)}[/]",
            f"  Postgres   {escape(self.database)}",
            f"  Redis      {escape(self.redis)}",
            "",
            "  Token (subject dev, admin, valid 7 days):",
            f"  {self.token}",
            "",
            "  Try it:",
            f"  export JOBQ_TOKEN={token}",
            f"  {curl}",
            "  jobq submit sleep seconds=5 --watch",
            "",
            "  Ctrl-C stops everything.",
            "",
        ]

    def show(self, console: Console) -> None:
        for line in self.lines():
            # soft_wrap: a token must never be broken across lines, or copy-paste fails.
            console.print(line, soft_wrap=True, highlight=False)
