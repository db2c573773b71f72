"""Figures across runs: the median and the spread (min-max), as tables and as JSON."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str  # "{sockets}" and "{jobs}" are filled in per scenario
    digits: int = 0


# In the order of the tables; each tuple is one table.
TABLES: tuple[tuple[str, tuple[Metric, ...]], ...] = (
    (
        "Delivery",
        (
            Metric("delivered", "delivered", "msg/s"),
            Metric("published", "published", "events/s"),
            Metric("delivery_pct", "reached", "%", 1),
            Metric("latency_p50", "p50", "ms", 1),
            Metric("latency_p99", "p99", "ms", 1),
            Metric("latency_max", "max", "ms", 0),
            Metric("window", "window", "s", 1),
        ),
    ),
    (
        "Correctness",
        (
            Metric("terminal", "got terminal", "of {sockets} watchers"),
            Metric("increasing", "seq increasing", "of {sockets} watchers"),
            Metric("missed", "seqs missed", "events (all watchers)"),
            Metric("resyncs", "re-snapshots", "snapshots (all watchers)"),
            Metric("abnormal", "not 1000", "sockets"),
            Metric("late", "late", "sockets"),
            Metric("jobs_ok", "jobs ok", "of {jobs} jobs"),
        ),
    ),
    (
        "Cost",
        (
            Metric("ready", "ready", "s", 2),
            Metric("client_cpu", "client CPU", "% of a core (busiest client)"),
            Metric("api_cpu", "API CPU", "% of a core"),
            Metric("api_cpu_idle", "API CPU idle", "% of a core"),
            Metric("machine_cpu", "machine", "% of all cores"),
            Metric("rss_0", "RSS 0", "MB"),
            Metric("rss_open", "RSS open", "MB"),
            Metric("rss_peak", "RSS peak", "MB"),
            Metric("rss_after", "RSS after", "MB"),
        ),
    ),
)


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | None  # the median of the runs
    unit: str
    min: float | None
    max: float | None
    runs: list[float | None]


def aggregate(
    title: str, sockets: int, jobs: int, runs: list[dict[str, float | None]]
) -> dict[str, Figure]:
    figures = {}
    for _, metrics in TABLES:
        for metric in metrics:
            values = [run.get(metric.key) for run in runs]
            known = [value for value in values if value is not None]
            figures[metric.key] = Figure(
                name=f"{title}: {metric.label}",
                value=statistics.median(known) if known else None,
                unit=metric.unit.format(sockets=sockets, jobs=jobs),
                min=min(known) if known else None,
                max=max(known) if known else None,
                runs=values,
            )
    return figures


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _cell(figure: Figure, digits: int) -> str:
    median = _number(figure.value, digits)
    if figure.min is None or figure.min == figure.max:
        return median
    return f"{median}\n[dim]{_number(figure.min, digits)}-{_number(figure.max, digits)}[/dim]"


def print_tables(console: Console, results: dict[str, dict[str, Figure]]) -> None:
    for heading, metrics in TABLES:
        table = Table(title=f"{heading} (median, min-max of the runs)", show_lines=True)
        table.add_column("scenario", no_wrap=True)
        for metric in metrics:
            unit = metric.unit.split(" (")[0].format(sockets="N", jobs="J")
            table.add_column(f"{metric.label}\n[dim]{unit}[/dim]", justify="right")
        for scenario, figures in results.items():
            table.add_row(
                scenario, *(_cell(figures[metric.key], metric.digits) for metric in metrics)
            )
        console.print(table)


def write_json(path: Path, results: dict[str, dict[str, Figure]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = [asdict(figure) for by_key in results.values() for figure in by_key.values()]
    path.write_text(json.dumps(figures, indent=2) + "\n")
