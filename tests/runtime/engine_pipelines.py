"""Pipelines for the engine tests of resume-with-parameters, hooks, ``after=`` and element names.

Module-level so `runs resume` (which loads the pipeline by reference) finds them again.
"""

from __future__ import annotations

import conveyor as cv
from tests.runtime.pipelines import bump

HOOK_CALLS: list[tuple[str, str | None, str, str | None]] = []   # (pipeline, step, status, error)


def record_hook(ctx: cv.HookContext) -> None:
    HOOK_CALLS.append((ctx.pipeline, ctx.step, ctx.status, ctx.error))


def broken_hook(ctx: cv.HookContext) -> None:
    HOOK_CALLS.append((ctx.pipeline, ctx.step, ctx.status, "broken"))
    raise RuntimeError("the pager is down")


# --- resume with new parameters ------------------------------------------------------------------

@cv.step
def load(rows: int) -> list:
    bump("load")
    return list(range(rows))


@cv.step
def fit(xs: list, scale: float) -> float:
    bump("fit")
    return sum(xs) * scale


@cv.step
def gate(score: float, min_score: float) -> float:
    bump("gate")
    if score < min_score:
        raise cv.QualityGateFailed(f"score {score:g} is below min_score {min_score:g}")
    return score


@cv.step
def check_scale(scale: float) -> float:
    bump("check_scale")
    if scale <= 0:
        raise cv.ParameterError(f"scale must be positive, got {scale:g}")
    return scale


@cv.step
def report(score: float) -> str:
    bump("report")
    return f"score={score:g}"


@cv.pipeline
def gated(rows: int = 4, scale: float = 1.0, min_score: float = 100.0):
    score = fit(load(rows), check_scale(scale))
    return report(gate(score, min_score))


@cv.step
def crash(x: list) -> int:
    raise ZeroDivisionError("division by zero in crash")


@cv.pipeline
def crashing(rows: int = 3):
    crash(load(rows))


# --- after= and hooks ------------------------------------------------------------------------------

@cv.step(on_success=record_hook, on_failure=record_hook)
def train(xs: list, fail: bool) -> int:
    bump("train")
    if fail:
        raise ValueError("training diverged")
    return len(xs)


@cv.step(on_success=broken_hook)
def notify(channel: str) -> str:
    bump("notify")
    return f"sent to {channel}"


@cv.pipeline(on_success=record_hook, on_failure=broken_hook)
def notified(fail: bool = False):
    model = train(load(3), fail)
    notify("ml", after=[model])
    return model


@cv.step
def flag(on: bool) -> bool:
    return on


@cv.pipeline
def after_skipped(on: bool = False):
    f = flag(on)
    with cv.when(f):
        done = train([1], False)
    notify("ml", after=done)


# --- element names ----------------------------------------------------------------------------------

@cv.step
def configs() -> list:
    return [{"name": "small", "C": 0.1}, {"name": "large", "C": 10.0}]


@cv.step
def score(cfg: dict, base: int) -> float:
    bump("score")
    return cfg["C"] * base


@cv.pipeline
def named(base: int = 2):
    scores = score.map(cfg=configs(), base=cv.unmapped(base), name_by="name")
    return scores


@cv.step
def ident(x: int) -> int:
    return x


@cv.pipeline
def named_literal(values: list[int] = [1, 2]):  # noqa: B006  (a default list is a plain parameter here)
    return ident.map(x=values, name_by=lambda v: f"v{v}")

