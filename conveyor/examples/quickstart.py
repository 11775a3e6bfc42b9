"""The quickstart: a churn model from generated data to a published candidate.

load → validate → split → features → train three candidates in parallel → evaluate →
pick the best → publish it only if its ROC AUC clears ``threshold``.

Run it with ``conveyor quickstart`` or ``conveyor run examples/quickstart.py:training -p rows=20000``.
"""

from __future__ import annotations

from typing import Any

import conveyor as cv

CANDIDATES = ["logistic_regression", "random_forest", "gradient_boosting"]
NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls", "age"]
CATEGORICAL = ["contract", "payment_method", "internet"]


@cv.step(retries=2)
def load(rows: int, seed: int = 7) -> Any:
    """Generate a customer table with a churn label that depends on the features (works offline)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    contract = rng.choice(["month-to-month", "one-year", "two-year"], rows, p=[0.55, 0.25, 0.2])
    payment = rng.choice(["card", "bank", "electronic-check", "mail"], rows)
    internet = rng.choice(["fiber", "dsl", "none"], rows, p=[0.45, 0.4, 0.15])
    tenure = rng.integers(1, 72, rows)
    monthly = np.round(rng.normal(65, 20, rows).clip(15, 130), 2)
    calls = rng.poisson(1.5, rows)
    age = rng.integers(18, 85, rows)
    logit = (-1.2 + 1.4 * (contract == "month-to-month") - 0.035 * tenure + 0.022 * (monthly - 65)
             + 0.45 * calls + 0.6 * (payment == "electronic-check") + 0.5 * (internet == "fiber"))
    churn = rng.random(rows) < 1 / (1 + np.exp(-logit))
    df = pd.DataFrame({
        "customer_id": np.arange(rows), "tenure_months": tenure, "monthly_charges": monthly,
        "total_charges": np.round(monthly * tenure, 2), "support_calls": calls, "age": age,
        "contract": contract, "payment_method": payment, "internet": internet, "churn": churn.astype(int),
    })
    print(f"generated {rows} customers, churn rate {df.churn.mean():.1%}")
    return df


@cv.step
def validate(df: Any) -> dict:
    """Check the schema and value ranges; stop the pipeline on bad data."""
    missing = [c for c in [*NUMERIC, *CATEGORICAL, "churn"] if c not in df.columns]
    if missing:
        raise ValueError(f"input data lacks columns {missing}")
    problems = {
        "null_cells": int(df[[*NUMERIC, *CATEGORICAL]].isna().sum().sum()),
        "negative_charges": int((df["monthly_charges"] < 0).sum()),
        "bad_labels": int((~df["churn"].isin([0, 1])).sum()),
    }
    if any(problems.values()):
        raise ValueError(f"data validation failed: {problems}")
    report = {"rows": len(df), "churn_rate": float(df["churn"].mean()), **problems}
    cv.log_metrics({"rows": report["rows"], "churn_rate": report["churn_rate"]})
    return report


@cv.step(outputs=["train", "test"])
def split(df: Any, report: dict, test_size: float = 0.25, seed: int = 7) -> tuple[Any, Any]:
    """Stratified train/test split."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(df, test_size=test_size, random_state=seed, stratify=df["churn"])
    return train.reset_index(drop=True), test.reset_index(drop=True)


@cv.step(outputs=["train_features", "test_features"])
def features(train: Any, test: Any) -> tuple[Any, Any]:
    """One-hot encode categories and add ratios; the category levels come from the training set only."""
    import pandas as pd

    levels = {c: sorted(train[c].unique()) for c in CATEGORICAL}

    def encode(df: Any) -> Any:
        out = df[NUMERIC].astype("float64").copy()
        out["charges_per_month_of_tenure"] = df["total_charges"] / df["tenure_months"].clip(lower=1)
        for c, values in levels.items():
            for v in values:
                out[f"{c}={v}"] = (df[c] == v).astype("float64")
        out["churn"] = df["churn"].to_numpy()
        return out

    return encode(train), encode(pd.DataFrame(test))


@cv.step
def train(candidate: str, data: Any, seed: int = 7) -> Any:
    """Fit one candidate model."""
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    models = {
        "logistic_regression": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=1.0)),
        "random_forest": lambda: RandomForestClassifier(n_estimators=120, max_depth=8, n_jobs=1, random_state=seed),
        "gradient_boosting": lambda: GradientBoostingClassifier(n_estimators=120, max_depth=3, random_state=seed),
    }
    X, y = data.drop(columns=["churn"]), data["churn"]
    model = models[candidate]().fit(X, y)
    cv.log_params({"candidate": candidate})
    print(f"trained {candidate} on {len(X)} rows")
    return model


@cv.step
def evaluate(models: list, test: Any) -> dict:
    """ROC AUC, accuracy and F1 of every candidate on the held-out set."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    X, y = test.drop(columns=["churn"]), test["churn"]
    scores = []
    for name, model in zip(CANDIDATES, models, strict=True):
        proba = model.predict_proba(X)[:, 1]
        s = {"candidate": name, "auc": float(roc_auc_score(y, proba)),
             "accuracy": float(accuracy_score(y, proba >= 0.5)), "f1": float(f1_score(y, proba >= 0.5))}
        cv.log_metrics({f"{name}.auc": s["auc"], f"{name}.accuracy": s["accuracy"]})
        scores.append(s)
    best = max(range(len(scores)), key=lambda i: scores[i]["auc"])
    cv.log_metric("best_auc", scores[best]["auc"])
    return {"scores": scores, "best": best, "best_candidate": scores[best]["candidate"], "auc": scores[best]["auc"]}


@cv.step
def pick_best(models: list, report: dict) -> Any:
    """The candidate with the highest ROC AUC."""
    return models[report["best"]]


@cv.step
def publish(model: Any, report: dict, data: Any, name: str = "churn") -> dict:
    """Register the winner in the model registry with its metrics, signature and the reference profile
    (training features, predictions, labels) that monitoring compares live traffic with."""
    metrics = {k: v for k, v in report["scores"][report["best"]].items() if isinstance(v, float)}
    version = cv.register_model(name, model, metrics=metrics, tags={"candidate": report["best_candidate"]},
                                data=data.drop(columns=["churn"]), target=data["churn"])
    print(f"registered {report['best_candidate']} as {name}:{version.version} (ROC AUC {report['auc']:.3f})")
    cv.log_metric("published_auc", report["auc"])
    return {"model": name, "version": version.version, "candidate": report["best_candidate"], "auc": report["auc"]}


@cv.pipeline
def training(rows: int = 5000, threshold: float = 0.7, seed: int = 7) -> None:
    """Train three churn models in parallel and publish the best one if it is good enough."""
    df = load(rows, seed=seed)
    report = validate(df)
    train_df, test_df = split(df, report, seed=seed)
    train_x, test_x = features(train_df, test_df)
    models = train.map(candidate=CANDIDATES, data=cv.unmapped(train_x), seed=cv.unmapped(seed))
    scores = evaluate(models, test_x)
    best = pick_best(models, scores)
    with cv.when(scores["auc"] >= threshold):
        publish(best, scores, train_x)
