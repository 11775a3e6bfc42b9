"""Nested constructs for the KFP export: a condition inside a condition, a fan-out sourced inside a
condition and one sourced outside it (the quickstart has a fan-out over a list known at build time)."""

from __future__ import annotations

import conveyor as cv


@cv.step
def numbers(n: int) -> list[int]:
    return list(range(1, n + 1))


@cv.step
def square(x: int) -> int:
    return x * x


@cv.step
def add(values: list[int]) -> int:
    return sum(values)


@cv.step
def tag(total: int, label: str) -> str:
    return f"{label}:{total}"


@cv.pipeline
def nested(n: int = 3, label: str = "big"):
    base = numbers(n)
    first = add(square.map(x=base))
    with cv.when(first >= 5):
        again = numbers(n)                                   # a source inside the condition
        second = add(square.map(x=again))
        outside = add(square.map(x=base))                    # a source outside the condition
        with cv.when(second >= 14):
            tag(second, label)
        tag(outside, "outside")
