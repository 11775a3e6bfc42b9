"""Executors: where step bodies run. One small protocol, one module per implementation."""

from __future__ import annotations

import importlib
from typing import Any

from conveyor.errors import ConfigurationError, Conflict
from conveyor.executors.base import Executor


class ExecutorRegistry:
    """Maps an executor name to ``module:Class``, imported on first use."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, str]] = {}

    def register(self, name: str, target: str, install_hint: str = "", *, override: bool = False) -> None:
        if name in self._entries and not override:
            raise Conflict(f"Executor '{name}' is already registered; pass override=True to replace it.")
        self._entries[name] = (target, install_hint)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def create(self, name: str, **options: Any) -> Executor:
        if name not in self._entries:
            raise ConfigurationError(f"Executor '{name}' is not known. Use one of: {', '.join(self.names())}.")
        target, hint = self._entries[name]
        module_name, _, cls_name = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except ImportError as exc:
            raise ConfigurationError(f"Executor '{name}' needs an extra package: {exc}. {hint}".strip()) from None
        return cls(**options)


registry = ExecutorRegistry()
registry.register("thread", "conveyor.executors.thread:ThreadExecutor")
registry.register("process", "conveyor.executors.process:ProcessExecutor")

__all__ = ["Executor", "ExecutorRegistry", "registry"]
