from __future__ import annotations

from dataclasses import replace

import pytest

from shared.errors import ConfigurationError, DuplicateKind
from shared.jobs.kinds.echo import kind as echo_kind
from shared.jobs.kinds.primes import kind as primes_kind
from shared.jobs.registry import Registry, load_registry
from shared.jobs.states import Lane

SAMPLE_KINDS = "tests.unit.jobs.sample_kinds"
SAMPLE_NO_KINDS = "tests.unit.jobs.sample_no_kinds"
SAMPLE_DUPLICATE_KIND = "tests.unit.jobs.sample_duplicate_kind"


def test_registry_refuses_a_duplicate_name_at_construction() -> None:
    with pytest.raises(DuplicateKind):
        Registry([echo_kind, replace(echo_kind, description="another echo")])


def test_register_refuses_a_duplicate_name() -> None:
    registry = Registry([echo_kind])
    with pytest.raises(DuplicateKind):
        registry.register(replace(echo_kind, description="another echo"))


def test_register_keeps_the_first_kind_after_a_duplicate() -> None:
    registry = Registry([echo_kind])
    with pytest.raises(DuplicateKind):
        registry.register(replace(echo_kind, description="another echo"))
    assert registry["echo"] is echo_kind


def test_registry_iterates_in_name_order() -> None:
    zeta = replace(echo_kind, name="zeta")
    alpha = replace(echo_kind, name="alpha")
    registry = Registry([zeta, primes_kind, alpha])
    assert [kind.name for kind in registry] == ["alpha", "primes", "zeta"]


def test_registry_lookup() -> None:
    registry = Registry([echo_kind])
    assert registry.get("echo") is echo_kind
    assert registry["echo"] is echo_kind
    assert "echo" in registry
    assert len(registry) == 1


def test_registry_get_of_an_unknown_kind_is_none() -> None:
    registry = Registry([echo_kind])
    assert registry.get("nope") is None
    assert "nope" not in registry


def test_load_registry_has_exactly_the_builtins() -> None:
    registry = load_registry()
    assert {kind.name for kind in registry} == {"echo", "notify", "sleep", "primes", "fail"}
    assert len(registry) == 5


@pytest.mark.parametrize(
    ("name", "lane"),
    [
        ("echo", Lane.QUICK),
        ("notify", Lane.QUICK),
        ("sleep", Lane.HEAVY),
        ("primes", Lane.HEAVY),
        ("fail", Lane.HEAVY),
    ],
)
def test_builtin_lane(name: str, lane: Lane) -> None:
    assert load_registry()[name].lane is lane


def test_load_registry_loads_an_extra_module() -> None:
    registry = load_registry([SAMPLE_KINDS])
    assert registry["sample.upper"].lane is Lane.QUICK
    assert registry["sample.reverse"].lane is Lane.HEAVY
    assert len(registry) == 7


def test_load_registry_refuses_a_module_without_kind_or_kinds() -> None:
    with pytest.raises(ConfigurationError, match="must define `kind` or `kinds`"):
        load_registry([SAMPLE_NO_KINDS])


def test_load_registry_refuses_a_module_that_cannot_be_imported() -> None:
    with pytest.raises(ConfigurationError, match="cannot import"):
        load_registry(["tests.unit.jobs.no_such_module"])


def test_load_registry_refuses_an_extra_kind_with_a_builtin_name() -> None:
    with pytest.raises(DuplicateKind):
        load_registry([SAMPLE_DUPLICATE_KIND])


def test_load_registry_refuses_a_kind_over_max_timeout() -> None:
    # sleep allows up to 3700 s.
    with pytest.raises(ConfigurationError, match="sleep: max_timeout"):
        load_registry(max_timeout=3600)


def test_load_registry_accepts_kinds_at_max_timeout() -> None:
    assert len(load_registry(max_timeout=3700)) == 5
