"""The schema a table is validated against: columns with constraints, row-count bounds, cross-column rules.

These pydantic models are what a schema file (YAML) parses into, and what Python code builds
directly (``Schema(columns={"age": Column(type="integer", range=Range(min=0, max=130))})``).
Every constraint has a policy (``on_fail``): ``fail`` the run, ``warn`` and go on, or
``quarantine`` the offending rows into their own artifact and go on with the rest. A constraint's
policy comes from, in order: its own ``on_fail`` (rules, ``rows``, ``unique_together``), its
column's ``on_fail`` (one policy, or one per constraint kind with a ``default``), the schema's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

Policy = Literal["fail", "warn", "quarantine"]
POLICIES = ("fail", "warn", "quarantine")
#: Constraint kinds a column can carry, in the order they are checked and reported.
COLUMN_KINDS = ("present", "type", "nullable", "range", "categories", "unique", "pattern", "length")
#: Kinds that judge the whole table, not rows: their offending "rows" cannot be set aside.
TABLE_KINDS = ("present", "type", "rows", "columns")
Scalar = str | int | float | bool

#: Type families a column's ``type`` may name, besides any Arrow type name (``int32``, ``timestamp[ms]``).
TYPE_FAMILIES = ("integer", "float", "number", "string", "boolean", "timestamp", "date", "any")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Model):
    """Values between ``min`` and ``max`` (either may be left open); numbers, or ISO text for dates and times."""

    min: float | int | str | None = None
    max: float | int | str | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("a range needs a min, a max or both")
        if isinstance(self.min, int | float) and isinstance(self.max, int | float) and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Length(_Model):
    """Text lengths (in characters) between ``min`` and ``max``."""

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Length:
        if self.min is None and self.max is None:
            raise ValueError("a length needs a min, a max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Column(_Model):
    """What one column must hold. Missing values pass every constraint but ``nullable``."""

    type: str | None = None
    required: bool = True
    nullable: bool = True
    range: Range | None = None
    categories: list[Scalar] | None = None
    unique: bool = False
    #: a regular expression (RE2 syntax) every value must match in full
    pattern: str | None = None
    length: Length | None = None
    on_fail: Policy | dict[str, Policy] | None = None
    description: str | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        if value is not None:
            arrow_type(value)   # raises ValueError naming the families
        return value

    @field_validator("pattern")
    @classmethod
    def _valid_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            check_regex(value)
        return value

    @field_validator("categories")
    @classmethod
    def _some_categories(cls, value: list[Scalar] | None) -> list[Scalar] | None:
        if value is not None and not value:
            raise ValueError("categories is empty: list the allowed values, or remove the key")
        return value

    @field_validator("on_fail")
    @classmethod
    def _known_kinds(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(COLUMN_KINDS) - {"default"})
            if unknown:
                raise ValueError(f"on_fail names unknown constraint kinds {unknown}; "
                                 f"use 'default' or one of {', '.join(COLUMN_KINDS)}")
        return value

    def policy(self, kind: str, schema_default: str) -> str:
        """The policy of this column's ``kind`` constraint."""
        if isinstance(self.on_fail, dict):
            return self.on_fail.get(kind) or self.on_fail.get("default") or schema_default
        return self.on_fail or schema_default


class Rows(_Model):
    """How many rows the table may have."""

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)
    on_fail: Policy | None = None


class Rule(_Model):
    """A cross-column rule: a Python expression over whole columns that must be true on every row.

    ``discount <= price``, ``status != "closed" or closed_at is not None``,
    ``abs(total - (net + tax)) < 0.01``. A row where the expression is missing (it reads a
    missing value) passes, as a SQL ``CHECK`` does; check presence with ``nullable``.
    """

    name: str = Field(min_length=1)
    check: str = Field(min_length=1)
    on_fail: Policy | None = None
    description: str | None = None

    @field_validator("check")
    @classmethod
    def _parses(cls, value: str) -> str:
        from conveyor.data.validation.expressions import parse_rule

        parse_rule(value)
        return value


class UniqueTogether(_Model):
    """Columns whose combination must not repeat (a composite key)."""

    columns: list[str] = Field(min_length=1)
    on_fail: Policy | None = None


class Schema(_Model):
    """A table's schema: its columns, row-count bounds, composite keys and cross-column rules."""

    version: Literal[1] = 1
    name: str | None = None
    description: str | None = None
    on_fail: Policy = "fail"
    #: fail when the table has columns the schema does not name
    strict: bool = False
    rows: Rows | None = None
    columns: dict[str, Column] = Field(default_factory=dict)
    unique_together: list[UniqueTogether] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    _source: str = PrivateAttr(default="<python>")
    _lines: dict[tuple[Any, ...], int] = PrivateAttr(default_factory=dict)

    @field_validator("unique_together", mode="before")
    @classmethod
    def _bare_lists(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"columns": v} if isinstance(v, list) else v for v in value]
        return value

    @model_validator(mode="after")
    def _distinct_rule_names(self) -> Schema:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}; give each rule its own name")
            seen.add(rule.name)
        return self

    @classmethod
    def from_yaml(cls, path: str) -> Schema:
        """Read a schema file; errors name the file, the line and the constraint."""
        from conveyor.data.validation.loading import load_schema

        return load_schema(path)

    def to_yaml(self) -> str:
        """The schema as YAML text (without comments; ``conveyor data suggest`` writes commented ones)."""
        import yaml

        data = self.model_dump(mode="json", exclude_defaults=True)
        return yaml.safe_dump({"version": 1, **data}, sort_keys=False, allow_unicode=True)

    def where(self, *path: Any) -> str:
        """``file line N`` for a place in the schema file (the nearest line known), for messages."""
        for end in range(len(path), -1, -1):
            line = self._lines.get(tuple(path[:end]))
            if line is not None:
                return f"{self._source} line {line}"
        return self._source


def arrow_type(name: str) -> Any:
    """The Arrow type a ``type`` names, or the family name itself; ValueError for neither."""
    if name in TYPE_FAMILIES:
        return name
    import pyarrow as pa

    try:
        return pa.type_for_alias(name)
    except (ValueError, KeyError):
        pass
    if name.startswith("timestamp[") and name.endswith("]"):
        unit, _, tz = name[len("timestamp["):-1].partition(",")
        try:
            return pa.timestamp(unit.strip(), tz.strip() or None)
        except (ValueError, KeyError):
            pass
    raise ValueError(f"unknown type {name!r}: use a family ({', '.join(TYPE_FAMILIES)}) "
                     "or an Arrow type name (int64, float32, string, bool, date32, timestamp[us])")


def check_regex(pattern: str) -> None:
    """ValueError when Arrow's RE2 engine cannot compile ``pattern`` (it has no look-around or back-references)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        pc.match_substring_regex(pa.array([""]), pattern=pattern)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"pattern {pattern!r} is not a valid RE2 regular expression ({exc}); "
                         "RE2 has no look-around and no back-references") from None
