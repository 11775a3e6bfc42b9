"""The price table: instance types and storage classes per cloud, dated, checked when read.

The table shipped in the package (``prices.yaml`` beside this module) is a handful of common
instance types and storage classes on AWS, GCP and Azure with on-demand and spot hourly prices and
an "as of" date. A user's own file of the same shape replaces it (``CONVEYOR_PRICES``); it is
validated with pydantic at the edge, and a wrong field is named in a one-line error.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from conveyor.errors import ConfigurationError

SHIPPED = Path(__file__).with_name("prices.yaml")


class Instance(BaseModel):
    """One instance type: its size and its hourly prices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    vcpus: float = Field(gt=0)
    memory_gib: float = Field(gt=0)
    gpus: int = Field(default=0, ge=0)
    gpu_type: str | None = None
    on_demand: float = Field(ge=0)
    spot: float | None = Field(default=None, ge=0)

    def fits(self, cpus: float, memory_gib: float, gpus: int) -> bool:
        """True when a task asking this much fits on one instance of this type."""
        return self.vcpus >= cpus and self.memory_gib >= memory_gib and self.gpus >= gpus


class StorageClass(BaseModel):
    """One storage class and its monthly price per (decimal) gigabyte."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    per_gb_month: float = Field(ge=0)


class CloudPrices(BaseModel):
    """What one cloud's instances and storage cost in one region."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str
    reference_instance: str
    default_storage: str
    instances: list[Instance] = Field(min_length=1)
    storage: list[StorageClass] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_exist(self) -> CloudPrices:
        if self.reference_instance not in {i.name for i in self.instances}:
            raise ValueError(f"reference_instance {self.reference_instance!r} is not one of its instances")
        if self.default_storage not in {s.name for s in self.storage}:
            raise ValueError(f"default_storage {self.default_storage!r} is not one of its storage classes")
        return self

    @property
    def reference(self) -> Instance:
        """The instance a vCPU-hour is priced by."""
        return next(i for i in self.instances if i.name == self.reference_instance)

    def storage_class(self, name: str | None = None) -> StorageClass:
        """A storage class by name (default: ``default_storage``)."""
        wanted = name or self.default_storage
        for s in self.storage:
            if s.name == wanted:
                return s
        raise ConfigurationError(f"No storage class {wanted!r} in the price table; it has: "
                                 f"{', '.join(s.name for s in self.storage)}.")

    def vcpu_hour(self, *, spot: bool = False) -> float:
        """The price of one vCPU for one hour, from the reference instance."""
        ref = self.reference
        price = ref.spot if spot and ref.spot is not None else ref.on_demand
        return price / ref.vcpus

    def gpu_hour(self, *, spot: bool = False) -> float | None:
        """The price of one GPU for one hour: the cheapest GPU instance per GPU (None: no GPU type listed)."""
        rates = [((i.spot if spot and i.spot is not None else i.on_demand) / i.gpus) for i in self.instances if i.gpus]
        return min(rates) if rates else None

    def smallest_fit(self, cpus: float, memory_gib: float, gpus: int = 0) -> Instance | None:
        """The cheapest instance type (on demand) that holds the request, or None when none does."""
        fitting = [i for i in self.instances if i.fits(cpus, memory_gib, gpus)]
        return min(fitting, key=lambda i: (i.on_demand, i.vcpus, i.memory_gib)) if fitting else None


class PriceTable(BaseModel):
    """The whole table: its date, its source, and prices per cloud."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    as_of: dt.date
    source: str = Field(min_length=1)
    currency: str = "USD"
    clouds: dict[str, CloudPrices] = Field(min_length=1)

    _origin: str = PrivateAttr(default=str(SHIPPED))   # where it was read from (not a field of the file)

    @property
    def origin(self) -> str:
        """The file the table was read from."""
        return self._origin

    def cloud(self, name: str) -> CloudPrices:
        """One cloud's prices; a clear error names the clouds the table has."""
        try:
            return self.clouds[name]
        except KeyError:
            raise ConfigurationError(f"The price table has no cloud {name!r}; it has: {', '.join(self.clouds)}. "
                                     "Pick one of those, or add it to your CONVEYOR_PRICES file.") from None

    def describe(self) -> str:
        """One line naming the table's date and source, printed with every estimate."""
        return f"price table as of {self.as_of.isoformat()} ({self.currency}; {self.origin})"


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def parse_prices(data: Any, origin: str) -> PriceTable:
    """Check a loaded document against the table's shape; the first wrong field is named."""
    try:
        table = PriceTable.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigurationError(
            f"Price table {origin}: field {_field_path(first['loc'])}: {first['msg']}{more}. Fix the file "
            f"(see {SHIPPED.name} in the conveyor package for the shape), or unset CONVEYOR_PRICES.") from None
    table._origin = origin
    return table


def load_prices(path: str | Path | None = None) -> PriceTable:
    """The price table at ``path``, or the shipped one when ``path`` is None."""
    import yaml

    source = Path(path).expanduser() if path else SHIPPED
    try:
        text = source.read_text()
    except OSError as exc:
        raise ConfigurationError(f"Price table {source} cannot be read ({exc.strerror or exc}). Point "
                                 "CONVEYOR_PRICES at a readable file, or unset it to use the shipped table.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigurationError(f"Price table {source} is not valid YAML{line}. Fix the file.") from None
    return parse_prices(data, str(source))


def round_up(value: float, step: float) -> float:
    """``value`` rounded up to a multiple of ``step`` (never below one step)."""
    return max(step, math.ceil(value / step - 1e-9) * step)
