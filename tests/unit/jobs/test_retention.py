"""When finished jobs fall due, per kind, and the settings and declarations that decide it."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel, ValidationError

from shared.jobs.context import JobContext
from shared.jobs.registry import Registry
from shared.jobs.retention import Cutoff, cutoffs
from shared.jobs.spec import JobKind
from shared.jobs.states import Lane
from shared.settings import Settings

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
WEEK = 7 * 24 * 3600


class Params(BaseModel):
    value: int = 0


def handler(ctx: JobContext, params: Params) -> Params:
    return params


def kind(name: str, result_ttl: float | None = None) -> JobKind[Params, Params]:
    return JobKind(
        name=name,
        lane=Lane.QUICK,
        params=Params,
        result=Params,
        handler=handler,
        description="A kind for tests.",
        result_ttl=result_ttl,
    )


def test_a_kind_keeps_results_for_the_default_unless_it_says_otherwise() -> None:
    assert kind("plain").result_ttl is None
    assert kind("short", result_ttl=0.5).result_ttl == 0.5


@pytest.mark.parametrize("result_ttl", [0.0, -1.0, math.nan, math.inf])
def test_a_kind_refuses_a_result_ttl_that_is_not_a_positive_number(result_ttl: float) -> None:
    with pytest.raises(ValueError, match="result_ttl must be a positive number of seconds"):
        kind("bad", result_ttl=result_ttl)


def test_without_overrides_every_kind_falls_due_after_the_default() -> None:
    assert cutoffs(NOW, Registry([kind("a"), kind("b")]), WEEK) == [
        Cutoff(NOW - timedelta(days=7), kinds=None, other_than=frozenset())
    ]


def test_kinds_with_their_own_ttl_are_grouped_by_it_and_left_out_of_the_default() -> None:
    registry = Registry(
        [
            kind("plain"),
            kind("hourly", result_ttl=3600),
            kind("also_hourly", result_ttl=3600),
            kind("monthly", result_ttl=30 * 24 * 3600),
        ]
    )
    assert cutoffs(NOW, registry, WEEK) == [
        Cutoff(NOW - timedelta(hours=1), kinds=frozenset({"hourly", "also_hourly"})),
        Cutoff(NOW - timedelta(days=30), kinds=frozenset({"monthly"})),
        Cutoff(NOW - timedelta(days=7), other_than=frozenset({"hourly", "also_hourly", "monthly"})),
    ]


def test_a_ttl_beyond_the_calendar_means_never() -> None:
    registry = Registry([kind("forever", result_ttl=1e15)])
    assert cutoffs(NOW, registry, WEEK) == [
        Cutoff(NOW - timedelta(days=7), other_than=frozenset({"forever"}))
    ]


def test_pruning_settings_default_to_every_five_minutes_a_thousand_rows_at_a_time(
    settings: Settings,
) -> None:
    assert (settings.result_ttl, settings.prune_interval, settings.prune_batch) == (
        WEEK,
        300.0,
        1000,
    )


@pytest.mark.parametrize("field", ["prune_interval", "prune_batch"])
def test_pruning_settings_refuse_values_below_one(field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: 0})  # type: ignore[arg-type]
