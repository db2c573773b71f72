"""The registry of job kinds: built-ins plus any modules named in JOBQ_KIND_MODULES."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from typing import Any

from shared.errors import ConfigurationError, DuplicateKind
from shared.jobs.spec import JobKind

BUILTIN_MODULES = (
    "shared.jobs.kinds.echo",
    "shared.jobs.kinds.notify",
    "shared.jobs.kinds.sleep",
    "shared.jobs.kinds.primes",
    "shared.jobs.kinds.fail",
)

AnyKind = JobKind[Any, Any]


class Registry:
    def __init__(self, kinds: Iterable[AnyKind] = ()) -> None:
        self._kinds: dict[str, AnyKind] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: AnyKind) -> AnyKind:
        if kind.name in self._kinds:
            raise DuplicateKind(f"job kind {kind.name!r} is already registered")
        self._kinds[kind.name] = kind
        return kind

    def get(self, name: str) -> AnyKind | None:
        return self._kinds.get(name)

    def __getitem__(self, name: str) -> AnyKind:
        return self._kinds[name]

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __iter__(self) -> Iterator[AnyKind]:
        return iter(sorted(self._kinds.values(), key=lambda kind: kind.name))

    def __len__(self) -> int:
        return len(self._kinds)


def load_registry(
    extra_modules: Iterable[str] = (), *, max_timeout: float | None = None
) -> Registry:
    """Import every kind module; each defines `kind` (a JobKind) or `kinds` (a list of them)."""
    registry = Registry()
    for module_name in (*BUILTIN_MODULES, *extra_modules):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigurationError(
                f"cannot import job kind module {module_name!r}: {exc}"
            ) from exc
        declared = getattr(module, "kinds", None) or [getattr(module, "kind", None)]
        for kind in declared:
            if not isinstance(kind, JobKind):
                raise ConfigurationError(f"{module_name} must define `kind` or `kinds`")
            if max_timeout is not None and kind.max_timeout > max_timeout:
                raise ConfigurationError(
                    f"{kind.name}: max_timeout {kind.max_timeout}s exceeds JOBQ_MAX_JOB_TIMEOUT"
                )
            registry.register(kind)
    return registry
