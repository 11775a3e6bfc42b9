"""Dataset references: ``customers``, ``customers:3``, ``customers@train``, or ``dataset://`` any of them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from conveyor.errors import InvalidRequest

SCHEME = "dataset://"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,199}$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,99}$")


@dataclass(frozen=True, slots=True)
class DatasetRef:
    """A parsed reference; at most one of ``version`` / ``alias`` is set (neither: the latest)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def check_dataset_name(name: str) -> str:
    """``name`` if it is a valid dataset name, else an InvalidRequest saying what is allowed."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequest(f"Dataset name {name!r} is not valid: use letters, digits, '_', '-', '.', '/' "
                             "(at most 200, starting with a letter or digit), e.g. 'customers'.", field="name")
    return name


def check_dataset_alias(alias: str) -> str:
    """``alias`` if it is a valid alias (a letter first, so it never reads as a version number)."""
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise InvalidRequest(f"Dataset alias {alias!r} is not valid: start with a letter; then letters, digits, "
                             "'_' and '-', e.g. 'train'.", field="alias")
    return alias


def parse_dataset_ref(text: str | DatasetRef) -> DatasetRef:
    """Parse ``customers``, ``customers:3``, ``customers@train`` (optionally prefixed ``dataset://``)."""
    if isinstance(text, DatasetRef):
        return text
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest(f"Dataset reference {text!r} is empty: write NAME, NAME:VERSION or NAME@ALIAS, "
                             "e.g. customers:3 or customers@train.", field="ref")
    raw = text.strip()
    body = raw[len(SCHEME):] if raw.startswith(SCHEME) else raw
    if "@" in body:
        name, _, alias = body.partition("@")
        if "@" in alias or ":" in alias:
            raise InvalidRequest(f"Dataset reference '{raw}' mixes a version and an alias: write NAME:VERSION or "
                                 "NAME@ALIAS, not both.", field="ref")
        return DatasetRef(check_dataset_name(name), alias=check_dataset_alias(alias))
    if ":" in body:
        name, _, version = body.rpartition(":")
        if not version.isdigit() or int(version) < 1:
            raise InvalidRequest(f"Dataset reference '{raw}': the version after ':' must be a positive whole "
                                 f"number, e.g. {name or 'customers'}:3.", field="version")
        return DatasetRef(check_dataset_name(name), version=int(version))
    return DatasetRef(check_dataset_name(body))
