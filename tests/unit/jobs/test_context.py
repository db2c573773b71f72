from __future__ import annotations

import threading
import uuid

import pytest

from shared.errors import JobCancelled
from shared.jobs.context import JobContext, ProgressUpdate


@pytest.fixture
def ctx() -> JobContext:
    return JobContext(job_id=uuid.uuid4(), kind="echo", attempt=1, max_attempts=3)


def test_take_progress_is_none_before_any_report(ctx: JobContext) -> None:
    assert ctx.take_progress() is None


def test_progress_keeps_only_the_latest_update(ctx: JobContext) -> None:
    ctx.progress(1, 10, "first")
    ctx.progress(2, 10, "second")
    assert ctx.take_progress() == ProgressUpdate(current=2.0, total=10.0, message="second")


def test_take_progress_empties_it(ctx: JobContext) -> None:
    ctx.progress(1, 10)
    ctx.take_progress()
    assert ctx.take_progress() is None


def test_progress_figures_are_floats(ctx: JobContext) -> None:
    ctx.progress(3, 4)
    update = ctx.take_progress()
    assert update is not None
    assert isinstance(update.current, float)
    assert isinstance(update.total, float)


def test_percent() -> None:
    assert ProgressUpdate(current=1, total=3, message=None).percent == 33.33


@pytest.mark.parametrize(("current", "percent"), [(150.0, 100.0), (-5.0, 0.0)])
def test_percent_is_clamped(current: float, percent: float) -> None:
    assert ProgressUpdate(current=current, total=100.0, message=None).percent == percent


def test_percent_is_none_without_total() -> None:
    assert ProgressUpdate(current=5.0, total=None, message=None).percent is None


def test_percent_is_none_with_a_zero_total() -> None:
    assert ProgressUpdate(current=5.0, total=0.0, message=None).percent is None


def test_progress_as_json() -> None:
    update = ProgressUpdate(current=1.0, total=4.0, message="a quarter")
    assert update.as_json() == {
        "current": 1.0,
        "total": 4.0,
        "percent": 25.0,
        "message": "a quarter",
    }


def test_check_cancelled_passes_before_cancel(ctx: JobContext) -> None:
    ctx.check_cancelled()
    assert not ctx.cancelled


def test_progress_raises_after_mark_cancelled(ctx: JobContext) -> None:
    ctx.mark_cancelled()
    with pytest.raises(JobCancelled):
        ctx.progress(1, 10)


def test_check_cancelled_raises_after_mark_cancelled(ctx: JobContext) -> None:
    ctx.mark_cancelled()
    assert ctx.cancelled
    with pytest.raises(JobCancelled):
        ctx.check_cancelled()


def test_contexts_do_not_share_cancellation(ctx: JobContext) -> None:
    other = JobContext(job_id=uuid.uuid4(), kind="echo", attempt=1, max_attempts=3)
    other.mark_cancelled()
    ctx.check_cancelled()


def test_progress_from_another_thread(ctx: JobContext) -> None:
    thread = threading.Thread(target=ctx.progress, args=(5, 10, "from a thread"))
    thread.start()
    thread.join(timeout=5)
    assert ctx.take_progress() == ProgressUpdate(current=5.0, total=10.0, message="from a thread")


def test_progress_from_many_threads_keeps_one_of_their_updates(ctx: JobContext) -> None:
    def report(n: int) -> None:
        for i in range(200):
            ctx.progress(i, 200, f"thread {n}")

    threads = [threading.Thread(target=report, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    update = ctx.take_progress()
    assert update is not None
    assert update.current == 199.0
    assert ctx.take_progress() is None


@pytest.mark.parametrize(("current", "total"), [(float("nan"), 1.0), (1.0, float("inf"))])
def test_progress_refuses_numbers_that_are_not_finite(current: float, total: float) -> None:
    ctx = JobContext(job_id=uuid.uuid4(), kind="k", attempt=1, max_attempts=1)
    with pytest.raises(ValueError, match="finite"):
        ctx.progress(current, total)


def test_progress_message_loses_nul_characters() -> None:
    ctx = JobContext(job_id=uuid.uuid4(), kind="k", attempt=1, max_attempts=1)
    ctx.progress(1, 2, "a\x00b")
    update = ctx.take_progress()
    assert update is not None and update.message == "ab"
