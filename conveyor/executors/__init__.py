"""Executors: where step bodies run. One small protocol, one module per implementation."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from conveyor.errors import ConfigurationError, Conflict
from conveyor.executors.base import Executor


class ExecutorRegistry:
    """Maps an executor name to ``module:Class``, imported on first use."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, str]] = {}
        self._requires: dict[str, tuple[str, ...]] = {}

    def register(self, name: str, target: str, install_hint: str = "", *, requires: tuple[str, ...] = (),
                 override: bool = False) -> None:
        """Add an executor; ``requires`` names the top-level modules it needs (checked without importing)."""
        if name in self._entries and not override:
            raise Conflict(f"Executor '{name}' is already registered; pass override=True to replace it.")
        self._entries[name] = (target, install_hint)
        self._requires[name] = tuple(requires)

    def names(self) -> list[str]:
        """Every known executor, installed or not."""
        return sorted(self._entries)

    def is_available(self, name: str) -> bool:
        """True when every module the executor needs is installed (found, not imported)."""
        return name in self._entries and all(_installed(m) for m in self._requires.get(name, ()))

    def available(self) -> list[str]:
        """The executors that can run here: what the CLI advertises."""
        return [n for n in self.names() if self.is_available(n)]

    def create(self, name: str, **options: Any) -> Executor:
        if name not in self._entries:
            raise ConfigurationError(f"Executor '{name}' is not known. Use one of: {', '.join(self.available())}.")
        target, hint = self._entries[name]
        if not self.is_available(name):
            missing = [m for m in self._requires[name] if not _installed(m)]
            raise ConfigurationError(
                f"Executor '{name}' needs {', '.join(missing)}, which is not installed. "
                f"{hint or 'Install it'}, or use one of: {', '.join(self.available())}.")
        module_name, _, cls_name = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except ImportError as exc:
            raise ConfigurationError(f"Executor '{name}' needs an extra package: {exc}. {hint}".strip()) from None
        return cls(**options)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


registry = ExecutorRegistry()
registry.register("thread", "conveyor.executors.thread:ThreadExecutor")
registry.register("process", "conveyor.executors.process:ProcessExecutor")
registry.register("dask", "conveyor.executors.dask:DaskExecutor", "pip install 'conveyor[dask]'",
                  requires=("distributed",))
registry.register("ray", "conveyor.executors.ray:RayExecutor", "pip install 'conveyor[ray]'", requires=("ray",))

__all__ = ["Executor", "ExecutorRegistry", "registry"]
