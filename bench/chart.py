"""The benchmark's picture: jobq beside its baselines, medians with min-max whiskers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PANELS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "POST /jobs, 64 connections (req/s)",
        "req/s",
        (
            ("hello\n1 proc", "submissions hello world, 1 process"),
            ("floor\n1 proc", "submissions FastAPI floor, 1 process"),
            ("naive\n1 proc", "submissions naive API, 1 process"),
            ("jobq\n1 proc", "submissions jobq, 1 process"),
            ("hello\n2 procs", "submissions hello world, 2 processes"),
            ("floor\n2 procs", "submissions FastAPI floor, 2 processes"),
            ("naive\n2 procs", "submissions naive API, 2 processes"),
            ("jobq\n2 procs", "submissions jobq, 2 processes"),
        ),
    ),
    (
        "Heavy lane, no-op jobs end to end (jobs/s)",
        "jobs/s",
        (
            ("raw Celery", "heavy lane raw Celery"),
            ("raw Celery\njobq's acks", "heavy lane raw Celery, jobq's delivery settings"),
            ("jobq", "heavy lane jobq"),
            ("jobq\nprefetch 4", "heavy lane jobq, JOBQ_WORKER_PREFETCH=4"),
        ),
    ),
    (
        "Latency (ms)",
        "ms",
        (
            ("POST /jobs p99\n2 procs", "submissions jobq, 2 processes: p99"),
            ("quick lane\np50", "quick lane submit -> succeeded: p50"),
            ("quick lane\np99", "quick lane submit -> succeeded: p99"),
            ("fan-out 1000\np99", "fan-out 1 job x 1000 watchers: p99"),
        ),
    ),
    (
        "Progress fan-out (events delivered/s)",
        "events/s",
        (
            ("1 job x\n1000 watchers", "fan-out 1 job x 1000 watchers"),
            ("100 jobs x\n10 watchers", "fan-out 100 jobs x 10 watchers"),
        ),
    ),
)


JOBQ, BASELINE = "#d62728", "#7f7f7f"


def _is_baseline(name: str) -> bool:
    return any(word in name for word in ("hello world", "floor", "naive", "raw Celery"))


def draw(figures: list[dict[str, Any]], machine: dict[str, Any], path: Path) -> bool:
    """Write the chart; False (and nothing written) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    by_name = {item["name"]: item for item in figures if item.get("value") is not None}
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, (title, unit, bars) in zip(axes.flat, PANELS, strict=True):
        shown = [(label, by_name[name]) for label, name in bars if name in by_name]
        ax.set_title(title, fontsize=11)
        ax.set_ylabel(unit)
        if not shown:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
            continue
        values = [item["value"] for _, item in shown]
        low = [item["value"] - item["min"] for _, item in shown]
        high = [item["max"] - item["value"] for _, item in shown]
        colours = [BASELINE if _is_baseline(item["name"]) else JOBQ for _, item in shown]
        positions = range(len(shown))
        ax.bar(positions, values, color=colours, yerr=[low, high], capsize=4)
        ax.set_xticks(list(positions), [label for label, _ in shown], fontsize=8)
        if unit == "ms" and max(values) > 20 * min(values):
            ax.set_yscale("log")  # milliseconds next to seconds
        for position, value in zip(positions, values, strict=True):
            ax.annotate(
                f"{value:,.0f}" if value >= 100 else f"{value:.1f}",
                (position, value),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 3),
                textcoords="offset points",
            )
    fig.suptitle(
        f"jobq benchmark: {machine.get('cpus')} CPUs, {machine.get('memory_gb')} GB, "
        f"Python {machine.get('python')} (median of runs, whiskers min-max)",
        fontsize=11,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
