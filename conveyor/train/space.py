"""Search spaces: what ``cv.tune(space={...})`` accepts, turned into Optuna distributions.

A space maps a parameter name to one of:

- ``cv.train.uniform(low, high)``, ``cv.train.loguniform(low, high)``: floats;
- ``cv.train.integer(low, high, step=1, log=False)``: integers, both ends included;
- ``cv.train.choice([...])`` or a plain list: one of the values;
- a ``(low, high)`` tuple: integers when both ends are ints, floats otherwise;
- any ``optuna.distributions.BaseDistribution``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Dimension:
    """One axis of a search space, independent of Optuna until it is sampled."""

    kind: str                       # float | int | choice
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    values: tuple[Any, ...] = ()

    def distribution(self) -> Any:
        from optuna import distributions as d

        if self.kind == "float":
            return d.FloatDistribution(float(self.low), float(self.high), log=self.log,  # type: ignore[arg-type]
                                       step=None if self.step is None else float(self.step))
        if self.kind == "int":
            return d.IntDistribution(int(self.low), int(self.high), log=self.log,  # type: ignore[arg-type]
                                     step=int(self.step or 1))
        return d.CategoricalDistribution(self.values)


def uniform(low: float, high: float, *, step: float | None = None) -> Dimension:
    """Floats between ``low`` and ``high`` (a grid of ``step`` when given)."""
    return _checked("uniform", Dimension("float", low, high, step=step))


def loguniform(low: float, high: float) -> Dimension:
    """Floats between ``low`` and ``high`` on a log scale (both above zero)."""
    return _checked("loguniform", Dimension("float", low, high, log=True))


def integer(low: int, high: int, *, step: int = 1, log: bool = False) -> Dimension:
    """Integers from ``low`` to ``high``, both included."""
    return _checked("integer", Dimension("int", low, high, log=log, step=step))


def choice(values: Sequence[Any]) -> Dimension:
    """One of ``values`` (None, bool, int, float or str: what the study can store)."""
    values = tuple(values)
    if not values:
        raise ConfigurationError("cv.train.choice([]) has no values; give at least one.")
    for v in values:
        if v is not None and not isinstance(v, bool | int | float | str):
            raise ConfigurationError(
                f"cv.train.choice: {v!r} is a {type(v).__name__}; choices must be None, bool, int, float or str. "
                "Choose a name and map it to the object inside the objective.")
    return Dimension("choice", values=values)


def _checked(what: str, dim: Dimension) -> Dimension:
    low, high = dim.low, dim.high
    if not isinstance(low, int | float) or not isinstance(high, int | float) or isinstance(low, bool):
        raise ConfigurationError(f"cv.train.{what}({low!r}, {high!r}): both ends must be numbers.")
    if low > high:
        raise ConfigurationError(f"cv.train.{what}({low!r}, {high!r}): low is above high; swap them.")
    if dim.log and low <= 0:
        raise ConfigurationError(f"cv.train.{what}({low!r}, {high!r}): a log scale needs low > 0.")
    if dim.step is not None and dim.step <= 0:
        raise ConfigurationError(f"cv.train.{what}: step must be positive, got {dim.step!r}.")
    return dim


def distributions(space: Mapping[str, Any]) -> dict[str, Any]:
    """The Optuna distribution of every parameter of ``space``; a clear error for a bad entry."""
    from optuna.distributions import BaseDistribution

    if not isinstance(space, Mapping):
        raise ConfigurationError(f"cv.tune: space must be a dict of parameter name to range, got {type(space).__name__}.")
    out: dict[str, Any] = {}
    for name, spec in space.items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"cv.tune: space key {name!r} must be a non-empty string.")
        if isinstance(spec, BaseDistribution):
            out[name] = spec
        elif isinstance(spec, Dimension):
            out[name] = spec.distribution()
        elif isinstance(spec, list):
            out[name] = choice(spec).distribution()
        elif isinstance(spec, tuple) and len(spec) == 2:
            low, high = spec
            both_int = all(isinstance(x, int) and not isinstance(x, bool) for x in spec)
            out[name] = (integer(low, high) if both_int else uniform(low, high)).distribution()
        else:
            raise ConfigurationError(
                f"cv.tune: space['{name}'] = {spec!r} is not a range. Use a (low, high) tuple, a list of choices, "
                "cv.train.uniform / loguniform / integer / choice, or an optuna distribution.")
    return out
