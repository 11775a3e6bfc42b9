"""Model references: ``name``, ``name:VERSION``, ``name@ALIAS``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from conveyor.errors import InvalidRequest

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,199}$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,99}$")


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A parsed reference; exactly one of ``version`` / ``alias`` is set, or neither (the latest)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise InvalidRequest(f"Model name {name!r} is not valid: use letters, digits, '_', '-', '.', '/' "
                             "(at most 200, starting with a letter or digit).", field="name")
    return name


def check_alias(alias: str) -> str:
    if not _ALIAS.match(alias or "") or alias.isdigit():
        raise InvalidRequest(f"Alias {alias!r} is not valid: start with a letter; letters, digits, '_' and '-'.",
                             field="alias")
    return alias


_ACTOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,199}$")


def check_actor(actor: str) -> str:
    """An actor name as roles and keys record it."""
    if not _ACTOR.match(actor or ""):
        raise InvalidRequest(f"Actor {actor!r} is not valid: use letters, digits, '_', '-', '.', '@' "
                             "(at most 200, starting with a letter or digit).", field="actor")
    return actor


def parse_ref(text: str) -> ModelRef:
    """Parse ``churn``, ``churn:7`` or ``churn@production``."""
    text = text.strip()
    if "@" in text:
        name, _, alias = text.partition("@")
        return ModelRef(check_name(name), alias=check_alias(alias))
    if ":" in text:
        name, _, version = text.rpartition(":")
        if not version.isdigit() or int(version) < 1:
            raise InvalidRequest(f"'{text}': the version after ':' must be a positive whole number, e.g. {name}:3.",
                                 field="version")
        return ModelRef(check_name(name), version=int(version))
    return ModelRef(check_name(text))
