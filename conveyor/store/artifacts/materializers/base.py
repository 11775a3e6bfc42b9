"""The materializer protocol and the registry that picks one for a value."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from conveyor.errors import Conflict, MaterializerNotFound


class Materializer(Protocol):
    """Turns one kind of value into bytes and back. One module per kind."""

    name: str
    version: str
    trusted_only: bool          # loading runs code from the artifact (pickle/joblib): only for trusted stores

    def handles(self, value: Any) -> bool:
        """Fine check after the type matched (e.g. reject object-dtype arrays)."""
        ...

    def save(self, value: Any, out: BinaryIO) -> dict[str, Any]:
        """Write the value; return small display facts (shape, columns…) for the metadata."""
        ...

    def load(self, data: bytes, meta: dict[str, Any]) -> Any:
        """Rebuild the value from verified bytes."""
        ...


@dataclass(frozen=True, slots=True)
class _Entry:
    target: str                  # "module:Class"
    type_names: tuple[str, ...]  # fully qualified names matched against the value's MRO
    install_hint: str


def qualified_names(cls: type) -> set[str]:
    """``module.Qualname`` of a class and all its bases."""
    return {f"{c.__module__}.{c.__qualname__}" for c in cls.__mro__}


class MaterializerRegistry:
    """Name → materializer, imported on first use; picks by the value's type, most specific first."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._loaded: dict[str, Materializer] = {}
        self.fallback: str | None = None

    def register(self, name: str, target: str, type_names: Iterable[str], *, install_hint: str = "",
                 override: bool = False, first: bool = False) -> None:
        """Add a materializer; ``first`` puts it ahead of the built-ins for the same types."""
        if name in self._entries and not override:
            raise Conflict(f"A materializer named '{name}' is already registered; pass override=True to replace it.")
        entry = _Entry(target, tuple(type_names), install_hint)
        if first:
            self._entries = {name: entry, **{k: v for k, v in self._entries.items() if k != name}}
        else:
            self._entries[name] = entry
        self._loaded.pop(name, None)

    def names(self) -> list[str]:
        return list(self._entries)

    def get(self, name: str) -> Materializer:
        """The materializer registered under ``name``."""
        found = self._loaded.get(name)
        if found is not None:
            return found
        entry = self._entries.get(name)
        if entry is None:
            raise MaterializerNotFound(
                f"No materializer named '{name}' is registered, so this artifact cannot be read. "
                f"Known: {', '.join(self._entries)}. Register the one that wrote it before loading.")
        module, _, cls = entry.target.partition(":")
        try:
            obj = getattr(importlib.import_module(module), cls)()
        except ImportError as exc:
            raise MaterializerNotFound(f"Materializer '{name}' needs a package that is missing: {exc}. "
                                       f"{entry.install_hint}".strip()) from None
        self._loaded[name] = obj
        return obj

    def for_value(self, value: Any) -> Materializer:
        """The first registered materializer whose types match the value and that accepts it."""
        names = qualified_names(type(value))
        for name, entry in self._entries.items():
            if name == self.fallback or not names.intersection(entry.type_names):
                continue
            m = self.get(name)
            if m.handles(value):
                return m
        if self.fallback is None:
            raise MaterializerNotFound(f"No materializer can store a {type(value).__qualname__}.")
        return self.get(self.fallback)
