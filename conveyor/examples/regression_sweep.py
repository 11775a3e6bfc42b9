"""A second example: a ridge-regression sweep on scikit-learn's bundled diabetes data.

Shows a fan-out over hyper-parameters, a join that picks the best, metric curves, and a
condition. Runs offline: ``conveyor run examples/regression_sweep.py:sweep -p folds=5``.
"""

from __future__ import annotations

from typing import Any

import conveyor as cv


@cv.step
def load_diabetes() -> Any:
    """The diabetes table shipped inside scikit-learn (no download)."""
    from sklearn.datasets import load_diabetes as load

    return load(as_frame=True).frame


@cv.step
def cross_validate(alpha: float, data: Any, folds: int = 5) -> dict:
    """Mean R² and RMSE of a ridge model over ``folds`` folds; logs one point per fold."""
    import numpy as np
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold

    X, y = data.drop(columns=["target"]).to_numpy(), data["target"].to_numpy()
    r2s, rmses = [], []
    for i, (tr, te) in enumerate(KFold(folds, shuffle=True, random_state=0).split(X)):
        model = Ridge(alpha=alpha).fit(X[tr], y[tr])
        pred = model.predict(X[te])
        rmse = float(np.sqrt(np.mean((pred - y[te]) ** 2)))
        r2s.append(float(model.score(X[te], y[te])))
        rmses.append(rmse)
        cv.log_metric(f"alpha={alpha:g}.rmse", rmse, step=i)
    return {"alpha": alpha, "r2": float(np.mean(r2s)), "rmse": float(np.mean(rmses))}


@cv.step
def choose(results: list) -> dict:
    """The alpha with the best mean R²."""
    best = max(results, key=lambda r: r["r2"])
    cv.log_metrics({"best_r2": best["r2"], "best_rmse": best["rmse"], "best_alpha": best["alpha"]})
    return best


@cv.step
def fit_final(best: dict, data: Any) -> Any:
    """Refit the chosen model on all rows."""
    from sklearn.linear_model import Ridge

    return Ridge(alpha=best["alpha"]).fit(data.drop(columns=["target"]), data["target"])


@cv.pipeline
def sweep(alphas: list = [0.01, 0.1, 1.0, 10.0], folds: int = 5, min_r2: float = 0.3) -> None:  # noqa: B006
    """Cross-validate every alpha in parallel, then refit the best if it explains enough variance."""
    data = load_diabetes()
    results = cross_validate.map(alpha=alphas, data=cv.unmapped(data), folds=cv.unmapped(folds))
    best = choose(results)
    with cv.when(best["r2"] >= min_r2):
        fit_final(best, data)
